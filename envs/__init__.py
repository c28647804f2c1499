"""Environment construction and the project's own testbeds (registered under `glasszero/`)."""
from envs.atari import frame_stack_of
from envs.make import NotApplicable, check_spaces, import_env_module, make, make_vec

__all__ = ["NotApplicable", "make", "make_vec", "check_spaces", "import_env_module", "frame_stack_of"]
