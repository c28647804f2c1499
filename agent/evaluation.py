"""The one evaluation protocol every algorithm is measured with.

N deterministic episodes, each on its own copy of the environment seeded `eval_seed(seed) + i`,
run side by side so a batched policy (the planner) acts on all of them in one call. The eval seeds
are disjoint from training seeds, so evaluation never replays a training episode's start.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Sequence

import numpy as np

import envs
from nets import NonFiniteObservation

EVAL_SEED_OFFSET = 1_000_003


def eval_seed(seed: int) -> int:
    return int(seed) + EVAL_SEED_OFFSET


@dataclass
class EvalResult:
    returns: np.ndarray  # [episodes]
    lengths: np.ndarray  # [episodes]
    final_infos: List[dict] = field(default_factory=list)  # last info dict of each episode

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))


def evaluate(act: Callable[[np.ndarray], np.ndarray], env_id: str, seed: int, episodes: int = 20, *,
             wrappers: Sequence = (), env_kwargs: dict | None = None, check: bool = True,
             max_steps: int = 1_000_000) -> EvalResult:
    """Run `episodes` episodes with `act(obs_batch) -> actions` (deterministic policies expected)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    base = eval_seed(seed)
    env_list = [envs.make(env_id, None, wrappers=wrappers, check=check, **(env_kwargs or {}))
                for _ in range(episodes)]
    obs = [e.reset(seed=base + i)[0] for i, e in enumerate(env_list)]
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    final_infos: List[dict] = [{} for _ in range(episodes)]
    active = list(range(episodes))
    steps = 0
    while active and steps < max_steps:
        try:
            actions = np.asarray(act(np.stack([obs[i] for i in active])))
        except NonFiniteObservation as e:  # the observations come from these envs
            raise NonFiniteObservation(f"{env_id} (evaluation, seeds from {base}): {e}") from e
        still = []
        for a, i in zip(actions, active):
            o, r, term, trunc, info = env_list[i].step(a.item() if np.ndim(a) == 0 else a)  # Box: keep the array
            returns[i] += float(r)
            lengths[i] += 1
            obs[i] = o
            if term or trunc:
                final_infos[i] = dict(info)
            else:
                still.append(i)
        active = still
        steps += 1
    for e in env_list:
        e.close()
    return EvalResult(returns=returns, lengths=lengths, final_infos=final_infos)
