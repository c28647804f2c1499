"""Environment construction and the project's own testbeds (registered under `glasszero/`)."""
from envs.make import check_spaces, import_env_module, load_attr, make, make_vec

__all__ = ["make", "make_vec", "check_spaces", "import_env_module", "load_attr"]
