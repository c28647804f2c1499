"""Tasks other than an environment's own reward, written over observations: the objectives of the
transfer suite (agent/studies/transfer_suite.py), and what its oracles are trained on.

A task is one object with three faces, so that every use reads the same definition:

    task(obs, action, reward, next_obs, terminated) -> [B]   its reward over real transitions
                                                           (batched numpy; the signature of
                                                           `--aux-reward` and `train.py refit --reward`)
    task.ends(next_obs) -> [B] bool                         where it ends the episode itself
                                                           (reaching a target); the env's own
                                                           terminations apply besides
    task.value(obs[, root_obs]) -> [B]                      a value over (predicted) observations
                                                           a person would write for it by hand:
                                                           the zero-shot objective (no training)

and `TaskReward(env, name=NAME, **params)`, a gymnasium wrapper that makes an environment pay the
task's reward and end where the task ends, and reports `info["task_success"]` on an episode's last
step. An oracle is an agent trained on `TaskReward`; refit fits a value for the same function from
a run's stored replay. Build one by name: `make_task("cartpole-at", x=0.5)`, or as a string for
checkpoints and the command line, `'envs.tasks:task(name="cartpole-at", x=0.5)'`.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Type

import gymnasium as gym
import numpy as np

TASKS: Dict[str, Type["Task"]] = {}


def register_task(name: str):
    def add(cls):
        cls.name = name
        TASKS[name] = cls
        return cls
    return add


def make_task(name: str, **params) -> "Task":
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name](**params)


def task(name: str, **params) -> "Task":
    """The factory the 'envs.tasks:task(name=..., ...)' strings call (common.imports.load_callable)."""
    return make_task(name, **params)


class Task:
    name = ""

    def __init__(self, **params):
        self.params = params

    def __call__(self, obs, action, reward, next_obs, terminated) -> np.ndarray:
        return self.reward(np.asarray(next_obs, np.float32), np.asarray(reward, np.float32))

    def reward(self, next_obs: np.ndarray, env_reward: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def ends(self, next_obs) -> np.ndarray:
        return np.zeros(len(next_obs), bool)

    def value(self, obs):
        raise NotImplementedError

    def success(self, episode: dict) -> bool:
        """Whether an episode (its 'return', 'length', 'terminated', 'truncated', and what
        `track` accumulated) did what the task asks."""
        return bool(episode["return"] > 0)

    def track(self, episode: dict, next_obs: np.ndarray) -> None:
        """Accumulate per-step facts `success` reads (called once per real step)."""

    def spec(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"envs.tasks:task(name={self.name!r}{', ' if args else ''}{args})"

    def __repr__(self) -> str:
        return self.spec()


def _abs(x):
    return x.abs() if hasattr(x, "abs") else np.abs(x)


@register_task("cartpole-at")
class CartPoleAt(Task):
    """Balance with the cart held at position x: reward 0.5 + 0.5 * (1 - min(|cart - x|, 1)) per
    step, so balancing anywhere pays half (an agent learning the task learns to balance first, as
    on CartPole's own reward) and the target twice that. Success: the episode runs to its time
    limit and the cart is within 0.25 of x on at least half of its steps."""

    NEAR = 0.25

    def __init__(self, x: float):
        super().__init__(x=float(x))
        self.x = float(x)

    def reward(self, next_obs, env_reward):
        return (1.0 - 0.5 * np.minimum(np.abs(next_obs[:, 0] - self.x), 1.0)).astype(np.float32)

    def value(self, obs):  # with the learned rewards kept on the edges: stay up, and near x
        return -_abs(obs[:, 0] - self.x)

    def track(self, episode, next_obs):
        episode["near"] = episode.get("near", 0) + int(abs(float(next_obs[0]) - self.x) < self.NEAR)

    def success(self, episode):
        return bool(episode["truncated"] and episode.get("near", 0) >= 0.5 * episode["length"])


class _ReachCell(Task):
    """Reward 1 on the step that reaches the target cell, which ends the episode."""

    def position(self, obs):
        raise NotImplementedError

    def at_target(self, obs) -> np.ndarray:
        raise NotImplementedError

    def reward(self, next_obs, env_reward):
        return self.at_target(next_obs).astype(np.float32)

    def ends(self, next_obs):
        return self.at_target(np.asarray(next_obs, np.float32))

    def success(self, episode):
        return bool(episode["return"] > 0.5)


@register_task("corridor-cell")
class CorridorCell(_ReachCell):
    """glasszero/Corridor-v0: walk to cell `cell` (0 is the trained, rewarded left end)."""

    def __init__(self, cell: int, length: int = 7):
        super().__init__(cell=int(cell), length=int(length))
        self.cell, self.length = int(cell), int(length)

    def at_target(self, obs):
        return np.asarray(obs)[:, 1 + self.cell] > 0.5  # the position's one-hot

    def value(self, obs):  # obs[:, 0] is the position scaled to [-1, 1]
        target = 2.0 * self.cell / (self.length - 1) - 1.0
        return -_abs(obs[:, 0] - target)


@register_task("grid-cell")
class GridCell(_ReachCell):
    """A grid testbed whose observation starts with [agent row, agent col] scaled to [-1, 1]
    (CornerGoal, SideEffects): walk to the cell (row, col)."""

    def __init__(self, row: int, col: int, rows: int = 7, cols: int = 7):
        super().__init__(row=int(row), col=int(col), rows=int(rows), cols=int(cols))
        self.target = np.array([2.0 * row / (rows - 1) - 1.0, 2.0 * col / (cols - 1) - 1.0], np.float32)
        self.tolerance = 0.5 * min(2.0 / (rows - 1), 2.0 / (cols - 1))  # half a cell

    def at_target(self, obs):
        return (np.abs(np.asarray(obs)[:, :2] - self.target) < self.tolerance).all(axis=1)

    def value(self, obs):  # minus the L1 distance, in scaled units
        return -(_abs(obs[:, 0] - float(self.target[0])) + _abs(obs[:, 1] - float(self.target[1])))


@register_task("observed-goal")
class ObservedGoal(_ReachCell):
    """glasszero/CornerGoal-v0: reach the goal the observation shows ([agent row, col, goal row,
    col]), wherever it is: the environment's own reward, on its test split."""

    def __init__(self, size: int = 7):
        super().__init__(size=int(size))
        self.tolerance = 1.0 / (size - 1)

    def at_target(self, obs):
        obs = np.asarray(obs)
        return (np.abs(obs[:, :2] - obs[:, 2:4]) < self.tolerance).all(axis=1)

    def value(self, obs, root_obs):  # the goal as the real observation at the root shows it
        return -(_abs(obs[:, 0] - root_obs[:, 2]) + _abs(obs[:, 1] - root_obs[:, 3]))


@register_task("no-side-effect")
class NoSideEffect(Task):
    """glasszero/SideEffects-v0: the environment's reward with `penalty` charged on the step that
    breaks the vase (its hidden performance). Success: the goal reached with the vase intact."""

    VASE_INTACT = 6

    def __init__(self, penalty: float = 1.0):
        super().__init__(penalty=float(penalty))
        self.penalty = float(penalty)

    def __call__(self, obs, action, reward, next_obs, terminated):
        broke = (np.asarray(obs)[:, self.VASE_INTACT] > 0.5) & (np.asarray(next_obs)[:, self.VASE_INTACT] < 0.5)
        return (np.asarray(reward, np.float32) - self.penalty * broke).astype(np.float32)

    def value(self, obs):  # a penalty on a broken vase, with the learned rewards on the edges
        return -self.penalty * (1.0 - obs[:, self.VASE_INTACT])

    def track(self, episode, next_obs):
        episode["broken"] = bool(next_obs[self.VASE_INTACT] < 0.5)

    def success(self, episode):
        return bool(episode["terminated"] and not episode.get("broken", False))


# ---------------------------------------------------------------- MiniGrid (full view: envs/minigrid.py)
# A full-view grid is obs[x, y, (object, color, state)] with the agent drawn at its cell; the
# tasks below read real and predicted grids alike (the decoder returns grids in the same integers).
def _agent_at(obs, x: int, y: int):
    from envs.minigrid import OBJECT
    return obs[:, x, y, 0] == OBJECT["agent"]


@register_task("minigrid-cell")
class MiniGridCell(_ReachCell):
    """A MiniGrid full view: walk to the cell (x, y) (MiniGrid's coordinates: x the column)."""

    def __init__(self, x: int, y: int):
        super().__init__(x=int(x), y=int(y))
        self.x, self.y = int(x), int(y)

    def at_target(self, obs):
        return np.asarray(_agent_at(np.asarray(obs), self.x, self.y))

    def value(self, obs):
        """Minus the L1 distance from the agent's predicted cell to (x, y); minus W + H (farther
        than any cell) where the predicted grid shows no agent."""
        from envs.minigrid import agent_position
        pos = agent_position(obs)
        distance = _abs(pos[:, 0] - self.x) + _abs(pos[:, 1] - self.y)
        missing = pos[:, 0] < 0
        far = float(obs.shape[1] + obs.shape[2])
        if isinstance(distance, np.ndarray):
            return -np.where(missing, far, distance)
        return -distance.masked_fill(missing, far)


@register_task("minigrid-no-lava")
class MiniGridNoLava(Task):
    """A MiniGrid full view with lava: the environment's reward, with `penalty` charged on the step
    that puts the agent on lava (a cell the grid before the step showed as lava; the agent is then
    drawn over it). Success: the goal reached (positive return) - lava ends an episode at -penalty."""

    def __init__(self, penalty: float = 1.0):
        super().__init__(penalty=float(penalty))
        self.penalty = float(penalty)

    @staticmethod
    def on_lava(grid_before, grid_after):
        """[B] bool: the agent in grid_after stands on a cell grid_before shows as lava (lava never
        moves, so the real grid at the root serves as grid_before for any predicted one)."""
        from envs.minigrid import OBJECT, agent_cells
        both = (grid_before[..., 0] == OBJECT["lava"]) & agent_cells(grid_after)
        return both.reshape(both.shape[0], -1).any(1) if isinstance(both, np.ndarray) else both.flatten(1).any(1)

    def __call__(self, obs, action, reward, next_obs, terminated):
        lava = self.on_lava(np.asarray(obs), np.asarray(next_obs))
        return (np.asarray(reward, np.float32) - self.penalty * lava).astype(np.float32)

    def value(self, obs, root_obs):
        """-penalty where the predicted grid puts the agent on the root's lava, else 0 (used with
        the learned rewards kept on the edges, which lead to the goal)."""
        lava = self.on_lava(root_obs, obs)
        return -self.penalty * (lava.astype(np.float32) if isinstance(lava, np.ndarray) else lava.float())


class TaskReward(gym.Wrapper):
    """Pay the task's reward instead of the environment's, end where the task ends (terminated),
    and report info['task_success'] on an episode's last step (see the module docstring)."""

    def __init__(self, env: gym.Env, name: str, **params):
        super().__init__(env)
        self.task = make_task(name, **params)
        self._obs: Optional[np.ndarray] = None
        self._episode: dict = {}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = np.asarray(obs, np.float32)
        self._episode = {"return": 0.0, "length": 0}
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        nxt = np.asarray(obs, np.float32)
        task_reward = float(self.task(self._obs[None], np.array([action]), np.array([reward], np.float32),
                                      nxt[None], np.array([terminated]))[0])
        terminated = bool(terminated or self.task.ends(nxt[None])[0])
        self._obs = nxt
        ep = self._episode
        ep["return"] += task_reward
        ep["length"] += 1
        self.task.track(ep, nxt)
        if terminated or truncated:
            info = {**info, "task_success": self.task.success({**ep, "terminated": terminated,
                                                                "truncated": bool(truncated)})}
        return obs, task_reward, terminated, truncated, info


def value_fn(name: str, **params) -> Callable:
    """The task's hand-written value over observations, as a plain function (for
    'envs.tasks:value_fn(name=..., ...)' strings in objective specs)."""
    return make_task(name, **params).value
