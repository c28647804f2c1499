"""Reanalyze: fresh policy targets for replayed states, searched with the target network.

A stored search policy was produced by an older network; as training goes on it says less about
what a search would choose now. MuZero Reanalyze / EfficientZero re-run the search on a fraction of
every batch with the (recent) target network and train the policy on that instead. Root noise is
kept, as in EfficientZero, so the targets stay as exploratory as the ones self-play writes.
"""
from __future__ import annotations

import numpy as np
import torch

from planners.search import search
from planners.config import SearchConfig


def reanalyze_policies(model, objective, config: SearchConfig, obs: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """Visit-count policies [M, A] of one batched search from each of the M observations."""
    with torch.no_grad():
        root = model.initial_inference(obs)
        result = search(model, objective, root, config, rng=rng, add_noise=True)
    return result.policy_target
