"""Coverage off the training policy: a share of self-play envs pursue targets of their own.

A model trained only on its own policy's states predicts badly where a swapped objective takes the
agent, and a task whose reward waits far from where the policy goes (MountainCar's flag) is never
learned. So the last `round(explore_fraction * num_envs)` self-play envs (the *explorers*) act
under the training objective plus a term of their own, one of three families
(AgentConfig.explore_family), all defined over the observation vector (the first two over predicted
observations, the third over the real ones it counts) and over no task a study evaluates:

- "hold-entry": per episode, one observation entry j, drawn at random, to be held at t (in units of
  that entry's spread over the observations self-play has seen, t ~ U(-2, 2)). Each edge of their
  search is credited

      base reward  -  explore_weight * |(o'_j - mean_j) / std_j - t|        (o' = decode(latent'))

  so an explorer keeps doing what the training objective asks (a CartPole explorer still balances)
  while steering somewhere the training policy would not go: the cart held off-centre, a grid
  agent at another cell.
- "novelty": each edge is credited

      base reward  +  explore_weight * mean distance of o' to its NOVELTY_NEIGHBOURS nearest
                      observations in an archive of those self-play has seen (in spreads per entry)

  so explorers push to the edge of what has been visited (on MountainCar a faster swing is a state
  never seen), as far as the model's predictions resolve it: there, within 24,000 steps they were
  not fine enough to take the explorers to the flag (README, "Coverage off the training policy").
  The archive is a uniform sample (reservoir) of every observation self-play has acted in.
- "visit-count": novelty measured on real transitions, not on predicted observations. Each real
  transition into o' earns the intrinsic reward 1 / sqrt(1 + N(cell(o'))), N counting the
  observations self-play has acted in per cell of a grid CELL_WIDTH spreads wide (the spreads of
  the first FREEZE_AFTER observations, then fixed so that a count keeps its cell; an episode's last
  observation, never acted in, is not counted); it suits low-dimensional observations: on pixels
  nearly every frame is a cell of its own, and the bonus stays near 1 everywhere. The reward is
  stored in replay and an auxiliary value head (INTRINSIC_HEAD, agent/aux_values.py) learns its
  n-step returns over latents on every state, at AgentConfig.explore_discount (shorter than the
  agent's: at 0.997 the value is ~333 times the mean bonus everywhere, and the bonus's contrast
  from one state to another is lost in it). Explorers search under

      base objective  +  explore_weight * intrinsic value at the leaves

  (planners.objectives.Sum): the value carries the novelty of what lies many steps ahead, which
  the model need not resolve one step at a time (the novelty family's limit), provided the latents
  hold what the counts tell apart: on MountainCar the explorers pump energy only with a jointly
  trained decoder over observations read in their bounds (its preset; README, "Coverage off the
  training policy").

Their transitions train what is policy-free (dynamics, reward, terminal head, consistency,
decoder); the policy loss skips them (agent/learner.py), and so does the value loss unless
AgentConfig.explore_trains_value: their returns follow another objective, but where they are the
only ones that ever reach the reward, their n-step returns are the value's only way to learn of it.
Reanalyzed policy targets, searched under the training objective, are kept.
"""
from __future__ import annotations

import hashlib
from typing import Dict, Mapping, Optional

import numpy as np
import torch

from agent.aux_values import AuxValue
from planners.objectives import Objective, Penalized, Sum

TARGET_RANGE = 2.0  # targets t ~ U(-2, 2) spreads: reachable for most entries, off the usual path
ARCHIVE_SIZE = 2048  # observations the novelty family measures distance to
NOVELTY_NEIGHBOURS = 5  # its distance is the mean over this many nearest: one stray visit does not hide a region
CELL_WIDTH = 0.5  # visit-count cells, in spreads of each observation entry
FREEZE_AFTER = 1000  # observations whose spreads fix the cells' widths
INTRINSIC_HEAD = "explore"  # the auxiliary value head of the visit-count family's intrinsic reward
CELL_DIGEST = 16  # bytes of a cell's key


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


class NoveltyBonus:
    """The novelty family's term over predicted observations [B, *obs] -> [B], as a penalty (so
    negative): minus the mean distance, in spreads per entry, to the nearest archived observations."""

    def __init__(self):
        self.set(np.zeros((1, 1)), np.zeros(1), np.ones(1))

    def set(self, archive: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
        std = torch.as_tensor(std, dtype=torch.float32)
        self.mean, self.std = torch.as_tensor(mean, dtype=torch.float32), std
        self.archive = (torch.as_tensor(archive, dtype=torch.float32) - self.mean) / std  # [M, D]

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        dev = obs.device
        z = (obs.reshape(len(obs), -1).float() - self.mean.to(dev)) / self.std.to(dev)
        d = torch.cdist(z, self.archive.to(dev))  # [B, M]
        k = min(NOVELTY_NEIGHBOURS, d.shape[1])
        return -d.topk(k, dim=1, largest=False).values.mean(1)


def hold_entry(base: Objective, entry: np.ndarray, target: np.ndarray, mean: np.ndarray, std: np.ndarray,
               weight: float) -> Penalized:
    """`base` with `weight * |z_j(b)(o') - t(b)|` subtracted on each edge of tree b (module doc)."""
    distance = TargetDistance()
    distance.set(entry, target, mean, std)
    return Penalized(base, distance, weight, numpy=False)


class PredictedObservationTerm:
    """What the two families over predicted observations share: a penalty (their `penalty`) taken
    off each edge, read through the decoder, and no intrinsic reward or head."""

    intrinsic_heads: tuple = ()  # auxiliary value heads this family needs (none)
    decodes = True  # its term reads predicted observations: it needs the decoder
    penalty: object

    def objective(self, base: Objective, weight: float) -> Objective:
        return Penalized(base, self.penalty, weight, numpy=False)

    def rewards(self, x: np.ndarray) -> np.ndarray:
        return np.zeros((len(x), 0), np.float32)  # no intrinsic reward


class HoldEntry(PredictedObservationTerm):
    """The hold-entry family's state (module doc): per explorer an observation entry and a target,
    redrawn when its episode starts."""

    def __init__(self, count: int, obs_size: int, heads: Mapping[str, torch.nn.Module], discount: float):
        self.obs_size = obs_size
        self.entry = np.zeros(count, np.int64)  # [n] observation entry each explorer holds
        self.target = np.zeros(count, np.float64)  # [n] where, in spreads from the mean
        self.penalty = TargetDistance()

    def observe(self, x: np.ndarray, seen: int, rng: np.random.Generator) -> None:
        pass  # the targets are drawn against the running statistics alone

    def redraw(self, which: np.ndarray, rng: np.random.Generator) -> None:
        k = int(which.sum())
        if k:
            self.entry[which] = rng.integers(0, self.obs_size, size=k)
            self.target[which] = rng.uniform(-TARGET_RANGE, TARGET_RANGE, size=k)

    def update(self, seen: int, mean: np.ndarray, std: np.ndarray) -> None:
        self.penalty.set(self.entry, self.target, mean, std)

    def state_dict(self) -> dict:
        return {"entry": self.entry.copy(), "target": self.target.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.entry, self.target = np.array(state["entry"]), np.array(state["target"])


class Novelty(PredictedObservationTerm):
    """The novelty family's state (module doc): the archive, a reservoir sample of every
    observation self-play has acted in (Vitter's algorithm R: each one seen so far is in it with
    equal chance)."""

    def __init__(self, count: int, obs_size: int, heads: Mapping[str, torch.nn.Module], discount: float):
        self.archive = np.zeros((ARCHIVE_SIZE, obs_size), np.float32)  # its first min(seen, ARCHIVE_SIZE) rows
        self.penalty = NoveltyBonus()

    def observe(self, x: np.ndarray, seen: int, rng: np.random.Generator) -> None:
        place = seen + np.arange(len(x))  # each observation's index among all seen
        full = place >= ARCHIVE_SIZE
        place[full] = rng.integers(0, place[full] + 1)  # kept if it lands inside the archive
        keep = place < ARCHIVE_SIZE
        self.archive[place[keep]] = x[keep]

    def redraw(self, which: np.ndarray, rng: np.random.Generator) -> None:
        pass  # nothing per episode

    def update(self, seen: int, mean: np.ndarray, std: np.ndarray) -> None:
        self.penalty.set(self.archive[:max(1, min(seen, ARCHIVE_SIZE))], mean, std)

    def state_dict(self) -> dict:
        return {"archive": self.archive.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.archive = np.array(state["archive"], dtype=np.float32)


class VisitCount:
    """The visit-count family's state (module doc): the cells' widths, once fixed, and the visits
    per cell (keyed by a 16-byte digest of the cell, so a key's size does not grow with the
    observation's); before the widths are fixed, the observations seen so far (counted then)."""

    intrinsic_heads = (INTRINSIC_HEAD,)
    decodes = False  # its term is a value over latents

    def __init__(self, count: int, obs_size: int, heads: Mapping[str, torch.nn.Module], discount: float):
        if count > 0 and INTRINSIC_HEAD not in heads:
            raise ValueError(f"the visit-count explorers need the agent's auxiliary value head "
                             f"{INTRINSIC_HEAD!r} (EZAgent builds it when explore_family is 'visit-count')")
        self.head = heads[INTRINSIC_HEAD] if INTRINSIC_HEAD in heads else None
        self.discount = float(discount)
        self.width: Optional[np.ndarray] = None  # [D] each cell's width per entry, once fixed
        self.visits: Dict[bytes, int] = {}  # cell digest -> observations acted in there
        self.early = np.zeros((0, obs_size), np.float32)  # observations seen before the widths were fixed

    def cells(self, x: np.ndarray) -> list:
        """[B] digests of the cells of observations x [B, D] (the widths are fixed)."""
        return [hashlib.blake2b(row.tobytes(), digest_size=CELL_DIGEST).digest()
                for row in np.floor(x / self.width).astype(np.int64)]

    def observe(self, x: np.ndarray, seen: int, rng: np.random.Generator) -> None:
        if self.width is None:  # fixed once a batch brings the count to FREEZE_AFTER or more
            self.early = np.concatenate([self.early, x])
            if len(self.early) < FREEZE_AFTER:
                return
            spread = self.early.astype(np.float64).std(0)
            self.width = CELL_WIDTH * np.where(spread > 1e-6, spread, 1.0)
            x, self.early = self.early, self.early[:0]
        for cell in self.cells(x):
            self.visits[cell] = self.visits.get(cell, 0) + 1

    def redraw(self, which: np.ndarray, rng: np.random.Generator) -> None:
        pass

    def update(self, seen: int, mean: np.ndarray, std: np.ndarray) -> None:
        pass  # the head is trained by the learner, the counts by `observe`

    def objective(self, base: Objective, weight: float) -> Objective:
        # Planned at the base's discount (Sum); the head's own, which it was trained at, is what it describes.
        return Sum(base, AuxValue(INTRINSIC_HEAD, self.head, discount=self.discount), weight)

    def rewards(self, x: np.ndarray) -> np.ndarray:
        """[B, 1] intrinsic rewards of transitions into x [B, D]: 1 / sqrt(1 + visits of the cell);
        0 while the widths are not fixed (about the first FREEZE_AFTER observations)."""
        if self.width is None:
            return np.zeros((len(x), 1), np.float32)
        n = np.array([self.visits.get(cell, 0) for cell in self.cells(x)], np.float64)
        return (1.0 / np.sqrt(1.0 + n)).astype(np.float32)[:, None]

    def state_dict(self) -> dict:
        cells = np.frombuffer(b"".join(self.visits), np.uint8).reshape(len(self.visits), CELL_DIGEST)
        return {"width": None if self.width is None else self.width.copy(), "early": self.early.copy(),
                "cells": cells.copy(), "visits": np.array(list(self.visits.values()), np.int64)}

    def load_state_dict(self, state: dict) -> None:
        self.width = None if state["width"] is None else np.array(state["width"])
        self.early = np.array(state["early"], np.float32)
        self.visits = {np.asarray(c, np.uint8).tobytes(): int(n) for c, n in zip(state["cells"], state["visits"])}


# AgentConfig.explore_family -> the family's state (tests/test_explore.py checks these are EXPLORE_FAMILIES)
FAMILIES = {"hold-entry": HoldEntry, "novelty": Novelty, "visit-count": VisitCount}


def intrinsic_heads(family: str, count: int, discount: float) -> Dict[str, float]:
    """The auxiliary value heads `count` explorers of `family` need the agent to train, with the
    discount of their returns (AgentConfig.explore_discount)."""
    return {name: discount for name in FAMILIES[family].intrinsic_heads} if count > 0 else {}


class Explorers:
    """The explorer envs (the last `count` of the vector env; module doc): their family's state,
    and the running statistics of the observations self-play acted in that it is measured against."""

    def __init__(self, count: int, obs_size: int, weight: float, family: str = "hold-entry",
                 heads: Optional[Mapping[str, torch.nn.Module]] = None, discount: float = 0.99):
        """heads: the agent's auxiliary value heads by name (the visit-count family reads
        INTRINSIC_HEAD's, trained at `discount`, AgentConfig.explore_discount)."""
        if family not in FAMILIES:
            raise ValueError(f"explore_family must be one of {tuple(FAMILIES)}, got {family!r}")
        self.count, self.obs_size, self.weight = int(count), int(obs_size), float(weight)
        self.family = FAMILIES[family](self.count, self.obs_size, heads or {}, discount)
        self.seen = 0  # observations counted in the statistics below
        self.mean = np.zeros(self.obs_size)  # [D] their mean
        self.sq = np.zeros(self.obs_size)  # [D] their sum of squared deviations (Chan et al.'s update)
        self._base: Optional[Objective] = None
        self._objective: Optional[Objective] = None  # built once per base objective, its state updated in place

    def observe(self, obs: np.ndarray, rng: np.random.Generator) -> None:
        """Count a batch of observations [B, *obs] into the running mean and spread, and into the
        family's state (the novelty archive draws its places with `rng`)."""
        x = obs.reshape(len(obs), -1).astype(np.float64)
        self.family.observe(x.astype(np.float32), self.seen, rng)
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
        self.family.redraw(which, rng)

    def objective(self, base: Objective) -> Objective:
        """The explorers' objective over `base` with the family's current state. Kept while the base
        is the same object, so a penalty's first-call checks run once, not once per step."""
        if self._objective is None or self._base is not base:
            self._base, self._objective = base, self.family.objective(base, self.weight)
        self.family.update(self.seen, self.mean, self.std)
        return self._objective

    def rewards(self, next_obs: np.ndarray) -> np.ndarray:
        """[B, len(family.intrinsic_heads)] the family's intrinsic rewards of transitions into
        next_obs [B, *obs] (the episodes' own last observations where they ended)."""
        return self.family.rewards(next_obs.reshape(len(next_obs), -1).astype(np.float32))

    def state_dict(self) -> dict:
        return {"seen": self.seen, "mean": self.mean.copy(), "sq": self.sq.copy(), **self.family.state_dict()}

    def load_state_dict(self, state: Optional[dict]) -> None:
        if state is not None:
            self.seen, self.mean, self.sq = int(state["seen"]), np.array(state["mean"]), np.array(state["sq"])
            self.family.load_state_dict(state)
