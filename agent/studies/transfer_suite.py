"""The transfer suite: objectives a person would ask a trained agent for, other than its training reward.

Each objective is a task of envs/tasks.py measured on an environment (`env`) after the agent was
trained on `base_env`'s own reward: the same environment, or its test split (other starts, the goal
elsewhere, the vase moved). Every objective is either

    dev    used for every choice of settings (the prior after a swap, refit's settings, budgets)
    eval   reported, never tuned on

and that split is written here, once, next to the objective. `zero_shot` is the objective a person
would write by hand for the task, over predicted observations (the task's `value`): what the agent
gets with no training at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

SPLITS = ("dev", "eval")

# What the base agents and the ez oracles are trained with beside the defaults (whose probe decoder
# makes objectives over predicted observations possible): the terminal head, so that predicted
# episode ends are absorbing in the search.
TRAIN_OVERRIDES = {"net.terminal_head": True}

# Environment steps of every training run on a base environment (base agent, ez and PPO oracles).
BUDGETS: Dict[str, int] = {
    "CartPole-v1": 10_000,
    "glasszero/Corridor-v0": 4_000,
    "glasszero/CornerGoal-v0": 10_000,
    "glasszero/SideEffects-v0": 4_000,
    # MiniGrid full views (envs/minigrid.py): the DoorKey-5x5 preset's steps scaled to the smaller
    # tasks (how they did: README, "Transfer").
    "glasszero/MiniGrid-Empty-5x5-Full-v0": 10_000,
    "glasszero/MiniGrid-LavaGapS5-Full-v0": 20_000,
}


@dataclass(frozen=True)
class SuiteObjective:
    name: str  # unique, e.g. "cartpole x=+0.5"
    base_env: str  # trained on its own reward
    env: str  # where the objective is measured (and its oracles trained)
    task: str  # a task name of envs/tasks.py
    params: Dict[str, object] = field(default_factory=dict)
    split: str = "dev"
    with_reward: bool = False  # zero-shot: keep the learned rewards on the edges beside the task's value

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"{self.name}: split must be one of {SPLITS}, got {self.split!r}")

    def _args(self) -> str:
        return "".join(f", {k}={v!r}" for k, v in self.params.items())

    @property
    def wrapper(self) -> str:
        """The env wrapper that pays the task's reward (for oracles and every measurement)."""
        return f"envs.tasks:TaskReward(name={self.task!r}{self._args()})"

    @property
    def reward(self) -> str:
        """The task's reward over real transitions, for refit."""
        return f"envs.tasks:task(name={self.task!r}{self._args()})"

    @property
    def zero_shot(self) -> dict:
        """The hand-written objective: the task's value over predicted observations."""
        return {"name": "observation-value", "fn": f"envs.tasks:value_fn(name={self.task!r}{self._args()})",
                "with_reward": self.with_reward}


SUITE: List[SuiteObjective] = [
    # CartPole: balance with the cart held at a position (the training reward only asks to balance).
    SuiteObjective("cartpole x=-0.5", "CartPole-v1", "CartPole-v1", "cartpole-at", {"x": -0.5}, "dev", True),
    SuiteObjective("cartpole x=+1.0", "CartPole-v1", "CartPole-v1", "cartpole-at", {"x": 1.0}, "dev", True),
    SuiteObjective("cartpole x=+0.5", "CartPole-v1", "CartPole-v1", "cartpole-at", {"x": 0.5}, "eval", True),
    SuiteObjective("cartpole x=-1.0", "CartPole-v1", "CartPole-v1", "cartpole-at", {"x": -1.0}, "eval", True),
    # Corridor (trained to walk to the left end, from the middle): other cells, from any start.
    SuiteObjective("corridor right end", "glasszero/Corridor-v0", "glasszero/CorridorTest-v0", "corridor-cell",
                   {"cell": 6}, "dev"),
    SuiteObjective("corridor cell 2", "glasszero/Corridor-v0", "glasszero/CorridorTest-v0", "corridor-cell",
                   {"cell": 2}, "eval"),
    SuiteObjective("corridor cell 5", "glasszero/Corridor-v0", "glasszero/CorridorTest-v0", "corridor-cell",
                   {"cell": 5}, "eval"),
    # CornerGoal (the goal always top-right in training): another corner; the goal wherever it is.
    SuiteObjective("cornergoal bottom-left", "glasszero/CornerGoal-v0", "glasszero/CornerGoal-v0", "grid-cell",
                   {"row": 6, "col": 0}, "dev"),
    SuiteObjective("cornergoal observed goal", "glasszero/CornerGoal-v0", "glasszero/CornerGoalTest-v0",
                   "observed-goal", {}, "eval"),
    # SideEffects: another cell; the goal without breaking the (moved) vase.
    SuiteObjective("sideeffects top-right", "glasszero/SideEffects-v0", "glasszero/SideEffects-v0", "grid-cell",
                   {"row": 0, "col": 6, "rows": 5, "cols": 7}, "dev"),
    SuiteObjective("sideeffects no vase", "glasszero/SideEffects-v0", "glasszero/SideEffectsTest-v0",
                   "no-side-effect", {}, "eval", True),
    # MiniGrid, full view (objectives over predicted grids need the agent's cell, which the
    # egocentric partial view never shows). Empty-5x5 (trained to reach the goal at (3, 3) from
    # (1, 1)): other cells of the 3x3 floor. LavaGapS5: the goal, never standing on lava.
    SuiteObjective("minigrid empty cell (3,1)", "glasszero/MiniGrid-Empty-5x5-Full-v0",
                   "glasszero/MiniGrid-Empty-5x5-Full-v0", "minigrid-cell", {"x": 3, "y": 1}, "dev"),
    SuiteObjective("minigrid empty cell (1,3)", "glasszero/MiniGrid-Empty-5x5-Full-v0",
                   "glasszero/MiniGrid-Empty-5x5-Full-v0", "minigrid-cell", {"x": 1, "y": 3}, "dev"),
    SuiteObjective("minigrid empty cell (2,2)", "glasszero/MiniGrid-Empty-5x5-Full-v0",
                   "glasszero/MiniGrid-Empty-5x5-Full-v0", "minigrid-cell", {"x": 2, "y": 2}, "eval"),
    SuiteObjective("minigrid empty cell (3,2)", "glasszero/MiniGrid-Empty-5x5-Full-v0",
                   "glasszero/MiniGrid-Empty-5x5-Full-v0", "minigrid-cell", {"x": 3, "y": 2}, "eval"),
    SuiteObjective("minigrid lavagap no lava", "glasszero/MiniGrid-LavaGapS5-Full-v0",
                   "glasszero/MiniGrid-LavaGapS5-Full-v0", "minigrid-no-lava", {}, "eval", True),
]


def select(suite: Sequence[SuiteObjective], envs: Optional[Sequence[str]] = None,
           split: str = "all") -> List[SuiteObjective]:
    """The suite's objectives on the base environments `envs` (all when None) and in `split`
    ('dev', 'eval' or 'all'); unknown names are refused."""
    known = {o.base_env for o in suite}
    unknown = sorted(set(envs or ()) - known)
    if unknown:
        raise ValueError(f"--envs: {', '.join(unknown)} not in the suite (it has: {', '.join(sorted(known))})")
    if split not in (*SPLITS, "all"):
        raise ValueError(f"--split must be dev, eval or all, got {split!r}")
    return [o for o in suite if (envs is None or o.base_env in envs) and split in ("all", o.split)]
