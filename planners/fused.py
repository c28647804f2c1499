"""A whole search in one Numba call: selection, the model's compiled recurrent step
(nets/compiled.py), expansion and backup, simulation after simulation, with no Python between.

`search` takes this path when it can (`fused_program`): the objective is `Learned` (the model's
own reward and value, what self-play and reanalyze search under), the root rule is pUCT's or
Gumbel's, and the model exports a Program. Any other objective reads predicted observations or
user code through torch, and takes the ordinary loop (planners/search.py), as does a model whose
forward runs in mixed precision (NetConfig.precision). The two paths are the
same algorithm on the same kernels; tests/test_compiled.py checks they build the same trees.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch
from numba import njit

from common.numba_cache import forget_stale_cache
from nets import compiled, support
from nets.output import ModelOutput
from planners import kernels
from planners.objectives import Learned

# What `simulate` returns beside a tree number (kernels.expand_and_backup's "bad row").
OK = -1
MODEL_NOT_FINITE = -2


def fused_program(model, objective, inference: str) -> Optional[compiled.Program]:
    """The model's Program when the search may run fused (see the module docstring), else None."""
    if inference == "torch" or type(objective) is not Learned:
        return None
    if getattr(model, "compute_dtype", None) is not None:  # mixed precision: the torch forward it asked for
        return None
    return compiled.export(model)


class PackedRoot(NamedTuple):
    """Roots computed by the compiled representation and prediction, in the form the fused search
    reads (`search` takes one in place of a ModelOutput): no torch tensor is made, which at B = 1
    is a good part of a search's fixed cost (benchmarks/bench_search_vs_mctx.py)."""

    latent: np.ndarray  # float32 [B, L]
    packed: np.ndarray  # float64 [B, 3 + 2A]: the search's host rows (kernels.COL_*); no terminal or mask column
    program: compiled.Program  # the weights the roots were computed with, which the search simulates with
    model: object  # the model they belong to


def packed_roots(model, program: compiled.Program, obs) -> Optional[PackedRoot]:
    """`model.initial_inference(obs)` through the compiled representation and prediction
    (program.has_representation). None for observations the model would refuse (a wrong shape,
    NaN or inf): the torch path raises its own error for them. The outputs are rounded to float32,
    as the torch model's are, so both paths build the same trees."""
    obs = obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)
    if obs.ndim != len(model.obs_shape) + 1 or obs.shape[1:] != model.obs_shape or not np.isfinite(obs).all():
        return None
    flat = np.ascontiguousarray(obs.reshape(obs.shape[0], -1), np.float32)
    B, A = len(flat), program.num_actions
    latent = np.empty((B, program.latent_dim), np.float32)
    packed = np.zeros((B, 3 + 2 * A))
    args = (program, flat, latent, packed)
    if not kernels.specialize(compiled.initial_step, *args)(*args):
        raise FloatingPointError(
            "Model.initial_inference: the network produced NaN or inf in its value, reward, policy or terminal "
            "output (training has probably diverged: lower the learning rate or clip gradients)")
    outputs = packed[:, :compiled.COL_LOGITS + A]
    outputs[:] = outputs.astype(np.float32)
    return PackedRoot(latent, packed, program, model)


def initial_inference(model, program: compiled.Program, obs) -> ModelOutput:
    """`model.initial_inference(obs)` through the compiled representation and prediction, as a
    ModelOutput (see `packed_roots`; refused observations go to the torch path)."""
    root = packed_roots(model, program, obs)
    if root is None:
        with torch.no_grad():
            return model.initial_inference(obs)
    A = program.num_actions
    out = root.packed[:, :compiled.COL_LOGITS + A].astype(np.float32)  # sliced in numpy: cheaper than torch
    return ModelOutput(latent=torch.from_numpy(root.latent), reward=torch.from_numpy(out[:, compiled.COL_REWARD]),
                       value=torch.from_numpy(out[:, compiled.COL_VALUE]),
                       policy_logits=torch.from_numpy(out[:, compiled.COL_LOGITS:]))


@njit(cache=True)
def simulate(tree, exploration, gumbel, sel, packed, pool, program, terminal_column, prior_mix,
             num_simulations):
    """Run `num_simulations` simulations on the initialized trees. pool [B * N, L] float32 holds
    node latents by flat slot (row 0 of each tree's block: its root); gumbel: the Gumbel root
    state, or None for pUCT at the root. Returns OK, MODEL_NOT_FINITE, or the first tree whose
    reward or value was not finite (kernels.expand_and_backup)."""
    B = sel.shape[1]
    for _ in range(num_simulations):
        if gumbel is None:
            kernels.select_puct(tree, exploration, sel)
        else:
            kernels.select_gumbel(tree, exploration, gumbel, sel)
        if not compiled.recurrent_step(program, pool, sel[kernels.SEL_FLAT_NODE], sel[kernels.SEL_MODEL_ACTION],
                                       sel[kernels.SEL_FLAT_SLOT], packed, terminal_column):
            return MODEL_NOT_FINITE
        for b in range(B):
            # Learned values an absorbing state at 0 (Objective.terminal_value).
            if terminal_column >= 0 and packed[b, terminal_column] > 0.5:
                packed[b, kernels.COL_VALUE] = 0.0
        bad = kernels.expand_and_backup(tree, sel, packed, terminal_column, -1, prior_mix)
        if bad >= 0:
            return bad
    return OK


# Its cache would otherwise outlive changes to the network code and kernels it calls.
forget_stale_cache(simulate, compiled, kernels, support)
