"""Reanalyze: fresh policy targets for replayed states, searched with the target network.

A stored search policy was produced by an older network; as training goes on it says less about
what a search would choose now. MuZero Reanalyze / EfficientZero re-run the search on a fraction of
every batch with the (recent) target network and train the policy on that instead. Root noise is
kept, as in EfficientZero, so the targets stay as exploratory as the ones self-play writes.
"""
from __future__ import annotations

import numpy as np

from planners.config import SearchConfig
from planners.policies import plan


def reanalyze_policies(model, objective, config: SearchConfig, obs: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """Policy targets [M, A] of one batched search from each of the M observations."""
    return plan(model, objective, obs, config, rng=rng, add_noise=True).action_weights
