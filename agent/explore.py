"""Coverage off the training policy: a share of self-play envs pursue targets drawn from a family.

A model trained only on its own policy's states predicts badly where a swapped objective takes the
agent. So the last `round(explore_fraction * num_envs)` self-play envs (the *explorers*) act under
the training objective plus a per-episode target: one observation entry j, drawn at random, to be
held at t (in units of that entry's spread over the observations self-play has seen, t ~ U(-2, 2)).
Each edge of their search is credited (a Penalized objective over the training one)

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

from planners.objectives import Objective, Penalized

TARGET_RANGE = 2.0  # targets t ~ U(-2, 2) spreads: reachable for most entries, off the usual path


def explorer_count(fraction: float, num_envs: int) -> int:
    """How many of `num_envs` self-play envs explore: round(fraction * num_envs), at most all but one."""
    return min(int(round(fraction * num_envs)), num_envs - 1)


class TargetDistance:
    """The explorers' penalty over predicted observations [B, *obs] -> [B]: per row b (tree b: row
    b of every batch the search evaluates belongs to root b), |z_j(b)(o') - t(b)| in spreads."""

    def __init__(self):
        self.set(np.zeros(0, np.int64), np.zeros(0), np.zeros(1), np.ones(1))

    def set(self, entry: np.ndarray, target: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
        self.entry = torch.as_tensor(entry, dtype=torch.long)  # [n]
        self.target = torch.as_tensor(target, dtype=torch.float32)  # [n]
        self.mean = torch.as_tensor(mean[entry], dtype=torch.float32)  # [n]
        self.std = torch.as_tensor(std[entry], dtype=torch.float32)  # [n]

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        flat, dev = obs.reshape(len(obs), -1), obs.device
        picked = flat[torch.arange(len(obs), device=dev), self.entry.to(dev)].float()
        return ((picked - self.mean.to(dev)) / self.std.to(dev) - self.target.to(dev)).abs()


def hold_entry(base: Objective, entry: np.ndarray, target: np.ndarray, mean: np.ndarray, std: np.ndarray,
               weight: float) -> Penalized:
    """`base` with `weight * |z_j(b)(o') - t(b)|` subtracted on each edge of tree b (module doc)."""
    distance = TargetDistance()
    distance.set(entry, target, mean, std)
    return Penalized(base, distance, weight, numpy=False)


class Explorers:
    """The targets of the explorer envs (the last `count` of the vector env), when to redraw them,
    and the running statistics of the observations self-play acted in that targets are drawn against."""

    def __init__(self, count: int, obs_size: int, weight: float):
        self.count, self.obs_size, self.weight = int(count), int(obs_size), float(weight)
        self.entry = np.zeros(self.count, np.int64)  # [n] observation entry each explorer holds
        self.target = np.zeros(self.count, np.float64)  # [n] where, in spreads from the mean
        self.seen = 0  # observations counted in the statistics below
        self.mean = np.zeros(self.obs_size)  # [D] their mean
        self.sq = np.zeros(self.obs_size)  # [D] their sum of squared deviations (Chan et al.'s update)
        self._objective: Optional[Penalized] = None  # built once per base objective, targets updated in place

    def observe(self, obs: np.ndarray) -> None:
        """Count a batch of observations [B, *obs] into the running mean and spread."""
        x = obs.reshape(len(obs), -1).astype(np.float64)
        n, mean = len(x), x.mean(0)
        total = self.seen + n
        delta = mean - self.mean
        self.sq += ((x - mean) ** 2).sum(0) + delta ** 2 * self.seen * n / total
        self.mean += delta * n / total
        self.seen = total

    @property
    def std(self) -> np.ndarray:
        """[D] spread of each entry; an entry that never varied (a wall in a grid) gets 1, so its
        target is a nearby value it may never reach, which costs nothing but that explorer's bonus."""
        spread = np.sqrt(self.sq / max(self.seen, 1))
        return np.where(spread > 1e-6, spread, 1.0)

    def redraw(self, which: np.ndarray, rng: np.random.Generator) -> None:
        """New targets for the explorers flagged in `which` [n] (their episodes just started)."""
        k = int(which.sum())
        if k:
            self.entry[which] = rng.integers(0, self.obs_size, size=k)
            self.target[which] = rng.uniform(-TARGET_RANGE, TARGET_RANGE, size=k)

    def objective(self, base: Objective) -> Penalized:
        """The explorers' objective over `base` with the current targets. Kept while the base is the
        same object, so the penalty's first-call checks run once, not once per step."""
        if self._objective is None or self._objective.base is not base:
            self._objective = hold_entry(base, self.entry, self.target, self.mean, self.std, self.weight)
        else:
            self._objective.penalty.fn.set(self.entry, self.target, self.mean, self.std)
        return self._objective

    def state_dict(self) -> dict:
        return {"entry": self.entry.copy(), "target": self.target.copy(), "seen": self.seen,
                "mean": self.mean.copy(), "sq": self.sq.copy()}

    def load_state_dict(self, state: Optional[dict]) -> None:
        if state is not None:
            self.entry, self.target = np.array(state["entry"]), np.array(state["target"])
            self.seen, self.mean, self.sq = int(state["seen"]), np.array(state["mean"]), np.array(state["sq"])
