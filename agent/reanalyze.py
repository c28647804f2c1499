"""Reanalyze: fresh policy targets for replayed states, searched with the target network.

A stored search policy was produced by an older network; as training goes on it says less about
what a search would choose now. MuZero Reanalyze / EfficientZero re-run the search on a fraction of
every batch with the (recent) target network and train the policy on that instead. Root noise is
kept, as in EfficientZero, so the targets stay as exploratory as the ones self-play writes,
except where a searched target is kept and reused for later samples (AgentConfig.reuse_reanalysis):
one noise draw would then be trained on for a whole target network's life, where fresh searches
average it out, so those searches run without it.
"""
from __future__ import annotations

import numpy as np

from planners.config import SearchConfig
from planners.objectives import Learned
from planners.policies import plan


def reused(reuse_reanalysis: bool, objective) -> bool:
    """Whether reanalyzed targets searched under `objective` are kept and reused until the target
    network's next copy (AgentConfig.reuse_reanalysis): only under the Learned objective, which
    reads nothing but the target network (another may read heads trained every step, aux:NAME).
    Their searches then add no root noise (module doc)."""
    return reuse_reanalysis and type(objective) is Learned


def reanalyze_policies(model, objective, config: SearchConfig, obs: np.ndarray,
                       rng: np.random.Generator, reuse_reanalysis: bool = False) -> np.ndarray:
    """Policy targets [M, A] of one batched search from each of the M observations, with root
    noise unless they are `reused` (AgentConfig.reuse_reanalysis)."""
    noise = not reused(reuse_reanalysis, objective)
    return plan(model, objective, obs, config, rng=rng, add_noise=noise).action_weights
