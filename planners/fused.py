"""A whole search in one Numba call: selection, the model's compiled recurrent step
(nets/compiled.py), expansion and backup, simulation after simulation, with no Python between.

`search` takes this path when it can (`fused_program`): the objective is `Learned` (the model's
own reward and value, what self-play and reanalyze search under), the root rule is pUCT's or
Gumbel's, and the model exports a Program. Any other objective reads predicted observations or
user code through torch, and takes the ordinary loop (planners/search.py). The two paths are the
same algorithm on the same kernels; tests/test_compiled.py checks they build the same trees.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit

from nets import compiled
from planners import kernels
from planners.objectives import Learned

# What `simulate` returns beside a tree number (kernels.expand_and_backup's "bad row").
OK = -1
MODEL_NOT_FINITE = -2


def fused_program(model, objective, inference: str) -> Optional[compiled.Program]:
    """The model's Program when the search may run fused (see the module docstring), else None."""
    if inference == "torch" or type(objective) is not Learned:
        return None
    return compiled.export(model)


@njit(cache=True)
def simulate(tree, exploration, gumbel, sel, packed, pool, program, terminal_column, prior_mix,
             num_simulations):
    """Run `num_simulations` simulations on the initialized trees. pool [B * N, L] float32 holds
    node latents by flat slot (row 0 of each tree's block: its root); gumbel: the Gumbel root
    state, or None for pUCT at the root. Returns OK, MODEL_NOT_FINITE, or the first tree whose
    reward or value was not finite (kernels.expand_and_backup)."""
    B = sel.shape[1]
    out_latent = np.empty((B, pool.shape[1]), np.float32)
    for _ in range(num_simulations):
        if gumbel is None:
            kernels.select_puct(tree, exploration, sel)
        else:
            kernels.select_gumbel(tree, exploration, gumbel, sel)
        parents = pool[sel[kernels.SEL_FLAT_NODE]]
        if not compiled.recurrent_step(program, parents, sel[kernels.SEL_MODEL_ACTION], out_latent, packed,
                                       terminal_column):
            return MODEL_NOT_FINITE
        for b in range(B):
            pool[sel[kernels.SEL_FLAT_SLOT, b]] = out_latent[b]
            # Learned values an absorbing state at 0 (Objective.terminal_value).
            if terminal_column >= 0 and packed[b, terminal_column] > 0.5:
                packed[b, kernels.COL_VALUE] = 0.0
        bad = kernels.expand_and_backup(tree, sel, packed, terminal_column, -1, prior_mix)
        if bad >= 0:
            return bad
    return OK
