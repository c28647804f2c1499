"""MiniGrid and BabyAI ids (`pip install -e ".[minigrid]"`, an optional extra): their grid observations.

MiniGrid's observation is a Dict (image, direction, mission). `envs.make` applies `GridImage`
to every `MiniGrid-*` / `BabyAI-*` id first, before any --wrapper, so that everything after it (the
user's wrappers, TaskReward, the networks) sees MiniGrid's standard image:

    partial view (the default)   [7, 7, 3] uint8, egocentric: the agent at column 3 of the bottom
                                 row, looking up (minigrid.wrappers.ImgObsWrapper's image)
    full view                    [W, H, 3] uint8, the whole grid, the agent drawn at its cell as
                                 (agent, red, direction) (minigrid.wrappers.FullyObsWrapper's image):
                                 `--wrapper envs.minigrid:FullView`, or the registered
                                 `glasszero/MiniGrid-*-Full-v0` ids of FULL_VIEW_IDS

Both are indexed obs[x, y, channel] as in MiniGrid, channels (object, color, state) holding small
integers (GRID_VALUES: 11 objects, 6 colors, 4 states: a door's 0..2, or in the full view the
agent's direction 0..3 at its own cell), so that objectives read them as MiniGrid's
own constants: `obs[:, x, y, 0] == OBJECT["lava"]`. The networks one-hot them (net.grid_values,
which the MiniGrid presets set) and the decoder predicts each channel as a categorical, returning
the most likely value: a predicted grid in the same integers (nets/grid.py).

The direction and the mission string are dropped: the direction is visible in the full view
(the agent's state channel) and implicit in the partial one (the view turns with the agent); the
mission is fixed for the ids the presets cover.
"""
from __future__ import annotations

from typing import Tuple

import gymnasium as gym
import numpy as np

PREFIXES = ("MiniGrid-", "BabyAI-")
INSTALL_HINT = 'pip install -e ".[minigrid]"'

# MiniGrid's minigrid.core.constants, copied so that tasks and tests can name cells without
# importing minigrid (a test of the constants checks they agree with the installed package).
OBJECT = {"unseen": 0, "empty": 1, "wall": 2, "floor": 3, "door": 4, "key": 5, "ball": 6, "box": 7,
          "goal": 8, "lava": 9, "agent": 10}
COLOR = {"red": 0, "green": 1, "blue": 2, "purple": 3, "yellow": 4, "grey": 5}
STATE = {"open": 0, "closed": 1, "locked": 2}
# The state channel also holds the agent's direction (0..3) at its cell in the full view.
GRID_VALUES: Tuple[int, int, int] = (len(OBJECT), len(COLOR), 4)

# Full-view ids for anything that takes only an env id (a training run, the transfer suite).
FULL_VIEW_IDS = {
    "glasszero/MiniGrid-Empty-5x5-Full-v0": "MiniGrid-Empty-5x5-v0",
    "glasszero/MiniGrid-LavaGapS5-Full-v0": "MiniGrid-LavaGapS5-v0",
    "glasszero/MiniGrid-DoorKey-5x5-Full-v0": "MiniGrid-DoorKey-5x5-v0",
}


def is_grid_env(env_id: str) -> bool:
    """Whether env_id is a MiniGrid/BabyAI id (or a full-view id of one): grid observations."""
    return env_id.startswith(PREFIXES) or env_id in FULL_VIEW_IDS


def require_minigrid() -> None:
    """Import minigrid (which registers its ids), or say how to install it."""
    try:
        import minigrid  # noqa: F401
    except ImportError as e:
        raise ImportError(f"MiniGrid ids need the minigrid package, an optional extra: {INSTALL_HINT}") from e


def _minigrid_env(env: gym.Env, who: str):
    inner = env.unwrapped
    if not hasattr(inner, "grid") or not hasattr(inner, "agent_pos"):
        raise ValueError(f"{who} wraps MiniGrid environments only; {inner.__class__.__name__} is not one")
    return inner


class GridImage(gym.ObservationWrapper):
    """MiniGrid's partial-view image, obs['image'] [7, 7, 3] uint8 (envs.make applies it itself)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        _minigrid_env(env, "envs.minigrid:GridImage")
        self.observation_space = env.observation_space["image"]

    def observation(self, obs):
        return obs["image"]


class FullView(gym.ObservationWrapper):
    """The whole grid [W, H, 3] uint8 in place of the partial view, the agent drawn at its cell as
    (agent, red, direction), exactly as minigrid.wrappers.FullyObsWrapper draws it. Read from the
    environment itself, so it goes anywhere after GridImage in the wrapper list."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        inner = _minigrid_env(env, "envs.minigrid:FullView")
        self.observation_space = gym.spaces.Box(0, 255, (inner.width, inner.height, 3), np.uint8)

    def observation(self, obs):
        inner = self.env.unwrapped
        grid = inner.grid.encode()
        x, y = inner.agent_pos
        grid[x, y] = (OBJECT["agent"], COLOR["red"], inner.agent_dir)
        return grid


# MiniGrid's actions (minigrid.core.actions.Actions), by name.
ACTION = {"left": 0, "right": 1, "forward": 2, "pickup": 3, "drop": 4, "toggle": 5, "done": 6}


class MinimalActions(gym.ActionWrapper):
    """Only the MiniGrid actions a task needs, as ALE's minimal action sets do for Atari: action i
    of the wrapped env is `actions[i]` of MiniGrid's seven (names of ACTION; default: turn left,
    turn right, forward, what navigation needs; DoorKey adds pickup and toggle). The others change
    nothing in those tasks, and a greedy agent whose values cannot tell waiting from moving repeats
    one of them to the time limit (README, "Greedy agents stand still").

        --wrapper envs.minigrid:MinimalActions
        --wrapper 'envs.minigrid:MinimalActions(actions=("left", "right", "forward", "pickup", "toggle"))'
    """

    def __init__(self, env: gym.Env, actions=("left", "right", "forward")):
        super().__init__(env)
        _minigrid_env(env, "envs.minigrid:MinimalActions")
        unknown = [a for a in actions if a not in ACTION]
        if unknown or not actions or len(set(actions)) != len(actions):
            raise ValueError(f"envs.minigrid:MinimalActions: actions must be distinct names of {list(ACTION)}, "
                             f"got {list(actions)}")
        self.actions = tuple(ACTION[a] for a in actions)
        self.action_space = gym.spaces.Discrete(len(self.actions))

    def action(self, action):
        return self.actions[int(action)]


def full_view_env(base_id: str, **kwargs) -> gym.Env:
    """Entry point of the FULL_VIEW_IDS: base_id with GridImage then FullView."""
    require_minigrid()
    return FullView(GridImage(gym.make(base_id, **kwargs)))


def register_full_view_ids() -> None:
    for env_id, base_id in FULL_VIEW_IDS.items():
        if env_id not in gym.registry:
            # No max_episode_steps here: base_id's own TimeLimit applies inside.
            gym.register(id=env_id, entry_point="envs.minigrid:full_view_env", kwargs={"base_id": base_id})


def check_wrappers(env_id: str, wrappers) -> None:
    """minigrid.wrappers act on the Dict observation, which GridImage has already replaced."""
    for w in wrappers:
        if isinstance(w, str) and w.startswith("minigrid.wrappers:"):
            raise ValueError(
                f"--wrapper {w!r}: envs.make already turns {env_id}'s Dict observation into MiniGrid's image "
                f"(the partial view), so minigrid.wrappers cannot follow it. For the full grid use "
                f"--wrapper envs.minigrid:FullView (envs/minigrid.py)")


# ---------------------------------------------------------------- reading grids (real or predicted)
def agent_cells(obs) -> "np.ndarray | torch.Tensor":
    """[B, W, H] bool: where a full-view grid batch [B, W, H, 3] shows the agent."""
    return obs[..., 0] == OBJECT["agent"]


def agent_position(obs):
    """[B, 2] float (x, y) of the agent in full-view grids [B, W, H, 3]; (-1, -1) where no cell
    shows it (a predicted grid can lose it). numpy in, numpy out; torch in, torch out."""
    at = agent_cells(obs)
    w, h = at.shape[1], at.shape[2]
    if isinstance(at, np.ndarray):
        xs, ys = np.meshgrid(np.arange(w), np.arange(h), indexing="ij")
        count = at.sum(axis=(1, 2))
        x = (at * xs).sum(axis=(1, 2)) / np.maximum(count, 1)
        y = (at * ys).sum(axis=(1, 2)) / np.maximum(count, 1)
        return np.where(count[:, None] > 0, np.stack([x, y], axis=1), -1.0).astype(np.float32)
    import torch
    xs, ys = torch.meshgrid(torch.arange(w, device=at.device), torch.arange(h, device=at.device), indexing="ij")
    at = at.float()
    count = at.sum(dim=(1, 2))
    pos = torch.stack([(at * xs).sum(dim=(1, 2)), (at * ys).sum(dim=(1, 2))], dim=1) / count.clamp(min=1)[:, None]
    return torch.where(count[:, None] > 0, pos, torch.full_like(pos, -1.0))
