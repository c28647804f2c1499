"""Coverage off the training policy: a share of self-play envs pursue targets drawn from a family.

A model trained only on its own policy's states predicts badly where a swapped objective takes the
agent. So the last `round(explore_fraction * num_envs)` self-play envs (the *explorers*) act under
the training objective plus a per-episode target: one observation entry j, drawn at random, to be
held at t (in units of that entry's spread over replay, t ~ U(-2, 2)). Each edge of their search is
credited

    base reward  -  explore_weight * |(o'_j - mean_j) / std_j - t|        (o' = decode(latent'))

so an explorer keeps doing what the training objective asks (a CartPole explorer still balances)
while steering somewhere the training policy would not go: the cart held off-centre, a grid
agent at another cell. The family is the same for every environment, written over the
observation vector, and not over any task a study evaluates.

Their transitions train what is policy-free (dynamics, reward, terminal head, consistency,
decoder); the policy and value losses skip them (agent/learner.py), because their actions and
returns follow another objective. Reanalyzed policy targets, searched under the training
objective, are kept.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from planners.objectives import Objective, predicted_observation

TARGET_RANGE = 2.0  # targets t ~ U(-2, 2) spreads: reachable for most entries, off the usual path


def explorer_count(fraction: float, num_envs: int) -> int:
    """How many of `num_envs` self-play envs explore: round(fraction * num_envs), at most all but one."""
    return min(int(round(fraction * num_envs)), num_envs - 1)


class HoldEntry(Objective):
    """`base` plus, per tree b, `-weight * |z_j(b)(o') - t(b)|` on each edge (see the module doc).

    Rows are trees: row b of every batch the search evaluates belongs to root b, so the targets are
    per row. Not in the objective registry: it exists only inside self-play.
    """

    def __init__(self, base: Objective, entry: np.ndarray, target: np.ndarray, mean: np.ndarray,
                 std: np.ndarray, weight: float):
        self.base, self.weight = base, float(weight)
        self.discount, self.max_depth = base.discount, base.max_depth
        self.entry = torch.as_tensor(entry, dtype=torch.long)  # [n]
        self.target = torch.as_tensor(target, dtype=torch.float32)  # [n]
        self.mean = torch.as_tensor(mean[entry], dtype=torch.float32)  # [n]
        self.std = torch.as_tensor(std[entry], dtype=torch.float32)  # [n]

    def observe(self, root_obs) -> None:
        self.base.observe(root_obs)

    def ends(self, model, out):
        return self.base.ends(model, out)

    def bonus(self, model, latent: torch.Tensor) -> torch.Tensor:
        obs = predicted_observation(model, latent, "HoldEntry (self-play explorers)").reshape(len(latent), -1)
        rows = torch.arange(len(latent), device=obs.device)
        z = (obs[rows, self.entry.to(obs.device)].float() - self.mean.to(obs.device)) / self.std.to(obs.device)
        return -self.weight * (z - self.target.to(obs.device)).abs()

    def edge_reward(self, model, parent_latent, action, out):
        return self.base.edge_reward(model, parent_latent, action, out) + self.bonus(model, out.latent)

    def leaf_value(self, model, out):
        return self.base.leaf_value(model, out)

    def terminal_value(self, model, out):
        return self.base.terminal_value(model, out)

    def describe(self) -> str:
        return f"HoldEntry(weight={self.weight:g}) of [{self.base.describe()}]"

    def to_spec(self) -> dict:  # never saved: the explorers' state is (entry, target), SelfPlay's
        return {"name": "hold-entry", "base": self.base.to_spec(), "weight": self.weight}


class Explorers:
    """The targets of the explorer envs (the last `count` of the vector env) and when to redraw them."""

    def __init__(self, count: int, obs_size: int, weight: float):
        self.count, self.obs_size, self.weight = int(count), int(obs_size), float(weight)
        self.entry = np.zeros(self.count, np.int64)  # [n] observation entry each explorer holds
        self.target = np.zeros(self.count, np.float64)  # [n] where, in spreads from the replay mean
        self.mean = np.zeros(self.obs_size)  # [D] replay statistics the targets were drawn against
        self.std = np.ones(self.obs_size)  # [D]

    def redraw(self, which: np.ndarray, replay_obs: np.ndarray, rng: np.random.Generator) -> None:
        """New targets for the explorers flagged in `which` [n] (their episodes just started),
        against the spread of the observations in replay so far."""
        if not which.any():
            return
        if len(replay_obs):
            flat = replay_obs.reshape(len(replay_obs), -1).astype(np.float64)
            self.mean, spread = flat.mean(0), flat.std(0)
            # An entry that never varied (a wall in a grid) gets unit spread: its target is then a
            # nearby value it may never reach, which costs nothing but that explorer's bonus.
            self.std = np.where(spread > 1e-6, spread, 1.0)
        k = int(which.sum())
        self.entry[which] = rng.integers(0, self.obs_size, size=k)
        self.target[which] = rng.uniform(-TARGET_RANGE, TARGET_RANGE, size=k)

    def objective(self, base: Objective) -> HoldEntry:
        return HoldEntry(base, self.entry, self.target, self.mean, self.std, self.weight)

    def state_dict(self) -> dict:
        return {"entry": self.entry.copy(), "target": self.target.copy(), "mean": self.mean.copy(),
                "std": self.std.copy()}

    def load_state_dict(self, state: Optional[dict]) -> None:
        if state is not None:
            self.entry, self.target = np.array(state["entry"]), np.array(state["target"])
            self.mean, self.std = np.array(state["mean"]), np.array(state["std"])
