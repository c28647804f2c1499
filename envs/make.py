"""Environment construction: any registered gymnasium id, user modules, and wrappers in order.

A wrapper is a class or a string, 'module:Class' or 'module:Class(key=value, ...)' with literal
keyword arguments (numbers, strings, booleans, None, tuples, lists, dicts), e.g.
'gymnasium.wrappers:DiscretizeAction(bins=5)'. Checkpoints store wrappers as these strings.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import gymnasium as gym

from common.imports import import_module, load_attr, parse_call
from envs import atari, minigrid


class NotApplicable(ValueError):
    """An algorithm cannot act in this environment (e.g. the planner on a continuous action space)."""


def import_env_module(module: str) -> None:
    """Import a user module whose import registers more gymnasium ids (`--env-module pkg`)."""
    import_module(module, "--env-module")


def _ensure_registered(env_id: str) -> None:
    if env_id.startswith("glasszero/"):
        import envs.testbeds  # noqa: F401  (registers the project's own testbeds)
    if atari.is_atari_env(env_id):
        atari.require_ale()  # importing ale_py registers the ALE/ ids; a clear error without it
    if minigrid.is_grid_env(env_id):
        minigrid.require_minigrid()  # importing minigrid registers its ids; a clear error without it
        minigrid.register_full_view_ids()
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown environment id {env_id!r}.{hint} If it lives in your own package, "
                         f"pass --env-module yourpkg so that importing it registers the id.")


def check_spaces(env: gym.Env, env_id: str) -> None:
    """The planner needs a discrete action space and a flat Box (vector or image) observation."""
    act, obs = env.action_space, env.observation_space
    if not isinstance(act, gym.spaces.Discrete):
        raise NotApplicable(
            f"{env_id} has action space {act}, but the glasszero planner only supports Discrete "
            f"actions. Discretize it with a wrapper (e.g. --wrapper "
            f"'gymnasium.wrappers:DiscretizeAction(bins=5)') or "
            f"compare with a baseline that handles it (--algo ppo).")
    if not isinstance(obs, gym.spaces.Box):
        raise NotApplicable(
            f"{env_id} has observation space {type(obs).__name__}; glasszero needs a Box. Flatten it "
            f"with --wrapper gymnasium.wrappers:FlattenObservation.")


def parse_wrapper(spec: str) -> Tuple[str, Dict[str, Any]]:
    """'module:Class(key=value, ...)' -> ('module:Class', {key: value}); no parentheses: no arguments.

    The arguments are read with `ast` and must be literals: nothing in the string is executed."""
    return parse_call(spec, "--wrapper")


def apply_wrapper(env: gym.Env, wrapper: str | Callable) -> gym.Env:
    """`wrapper(env, **its arguments)`; a failure is a ValueError naming the wrapper and the syntax."""
    if not isinstance(wrapper, str):
        return wrapper(env)
    path, kwargs = parse_wrapper(wrapper)
    cls = load_attr(path, "wrapper")
    try:
        return cls(env, **kwargs)
    except Exception as e:  # noqa: BLE001 -- any failure of a user-named class, reported with its string
        raise ValueError(f"wrapper {wrapper!r} could not be built: {type(e).__name__}: {e}. Arguments go in the "
                         f"string, as literals: --wrapper 'module:Class(key=value, ...)'") from e


def make(env_id: str, seed: Optional[int] = None, *, wrappers: Sequence[str | Callable] = (),
         env_module: Optional[str] = None, check: bool = True, **kwargs) -> gym.Env:
    """Make one environment, apply `wrappers` in order, seed its spaces and first reset.

    `wrappers` holds gymnasium wrapper classes or strings (module docstring). `check=False` skips the
    planner's space check (the Stable-Baselines3 baselines accept more spaces than the planner).
    A MiniGrid/BabyAI id gets MiniGrid's image observation first (envs/minigrid.py: the partial
    view; `--wrapper envs.minigrid:FullView` for the whole grid); an Atari id (ALE/...) the Atari
    100k benchmark's preprocessing and frame stack (envs/atari.py).
    """
    if env_module:
        import_env_module(env_module)
    _ensure_registered(env_id)
    env = atari.make(env_id, **kwargs) if atari.is_atari_env(env_id) else gym.make(env_id, **kwargs)
    if env_id.startswith(minigrid.PREFIXES):
        minigrid.check_wrappers(env_id, wrappers)
        env = minigrid.GridImage(env)
    for w in wrappers:
        env = apply_wrapper(env, w)
    if check:
        check_spaces(env, env_id)
    if seed is not None:
        env.reset(seed=int(seed))
        env.action_space.seed(int(seed))
        env.observation_space.seed(int(seed))
    return env


def make_vec(env_id: str, num_envs: int, seed: int, *, wrappers: Sequence[str | Callable] = (),
             env_module: Optional[str] = None, check: bool = True, **kwargs) -> gym.vector.VectorEnv:
    """A synchronous vector env of `num_envs` copies seeded seed, seed+1, ... (same-step autoreset)."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    make(env_id, None, wrappers=wrappers, env_module=env_module, check=check, **kwargs).close()
    fns = [lambda: make(env_id, None, wrappers=wrappers, check=False, **kwargs) for _ in range(num_envs)]
    venv = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    venv.reset(seed=[int(seed) + i for i in range(num_envs)])
    venv.action_space.seed(int(seed))
    return venv
