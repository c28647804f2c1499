"""Gumbel MuZero's root rule: sequential halving over Gumbel-perturbed actions (Danihelka et al.
2022, as used by EfficientZero V2), with its improved-policy target.

The root of each tree draws g(a) ~ Gumbel(0, 1) once per search (zero without noise) and considers
the top m = min(max_considered, legal actions) of g(a) + logits(a). The simulation budget is
spent in rounds of sequential halving; which visit count a considered action must have at
simulation k is a fixed table (as in mctx's `get_sequence_of_considered_visits`), so the root rule
is stateless: at simulation k visit the action with the highest g + logits + sigma(q̂) among those
with exactly table[k] visits. Below the root, selection is ordinary pUCT. The per-simulation parts
are Numba kernels (kernels.select_gumbel, kernels.gumbel_decide); this module prepares them.

sigma(q̂) = (c_visit + max_b N(b)) * c_scale * q̂, where q̂ is the root's Q completed with the
mixed value for unvisited actions, min-max rescaled over the root's actions (mctx's
`qtransform_completed_by_mix_value`). The action played is the highest g + logits + sigma(q̂) among
the most-visited actions; the policy target is softmax(logits + sigma(q̂)) over legal actions,
which a pUCT search can train on too (`improved_policy`, SearchConfig.policy_target).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from planners import kernels
from planners.tree import ROOT, Tree



class GumbelRoot(NamedTuple):
    """The per-search Gumbel state of B roots, fixed before the first simulation."""

    root_score: np.ndarray  # [B, A] g(a) + log prior(a) for the considered actions, -inf elsewhere
    logits: np.ndarray  # [B, A] log prior, -inf for illegal actions
    raw_value: np.ndarray  # [B] the root's leaf value (mctx's raw_value)
    visit_table: np.ndarray  # [M + 1, S] considered_visit_table(m, S) for m = 0 .. M
    num_considered: np.ndarray  # [B] int64: considered actions of each root
    c_visit: float
    c_scale: float
    q_scratch: np.ndarray  # [A] float64 work space


def considered_visit_table(max_considered: int, num_simulations: int) -> np.ndarray:
    """Visit count a considered root action must have when simulation k picks it, [num_simulations].

    Sequential halving: log2(m) rounds, each giving every remaining action an equal share, and the
    number of considered actions halved after every round (mctx's schedule, same numbers)."""
    if max_considered <= 1:
        return np.arange(num_simulations, dtype=np.int64)
    log2max = int(math.ceil(math.log2(max_considered)))
    sequence = []
    visits = [0] * max_considered
    num_considered = max_considered
    while len(sequence) < num_simulations:
        num_extra_visits = max(1, int(num_simulations / (log2max * num_considered)))
        for _ in range(num_extra_visits):
            sequence.extend(visits[:num_considered])
            for i in range(num_considered):
                visits[i] += 1
        num_considered = max(2, num_considered // 2)
    return np.asarray(sequence[:num_simulations], dtype=np.int64)


@functools.lru_cache(maxsize=64)
def _visit_tables(max_considered: int, num_simulations: int) -> np.ndarray:
    """considered_visit_table(k, S) for k = 0 .. max_considered, stacked (one schedule per
    possible number of considered actions: rows differ in legal actions). The same few tables
    serve every search of a run, so they are built once; read-only, since they are shared."""
    table = np.stack([considered_visit_table(k, num_simulations) for k in range(max_considered + 1)])
    table.flags.writeable = False
    return table


def draw(tree: Tree, rng: np.random.Generator, add_noise: bool, max_considered: int,
         num_simulations: int, c_visit: float, c_scale: float, backend=kernels) -> GumbelRoot:
    """The Gumbel root of B initialized trees: noise, considered actions (kernels.gumbel_consider)
    and the halving tables."""
    B, A = tree.batch_size, tree.num_actions
    noise = rng.gumbel(size=(B, A)) if add_noise else np.zeros((B, A))
    logits, root_score = np.empty((B, A)), np.empty((B, A))
    num_considered = np.empty(B, np.int64)
    args = (tree, noise, int(max_considered), logits, root_score, num_considered)
    kernels.specialize(backend.gumbel_consider, *args)(*args)
    table = _visit_tables(int(num_considered.max()), num_simulations)
    return GumbelRoot(root_score=root_score, logits=logits, raw_value=tree.leaf_value[:, ROOT].copy(),
                      visit_table=table, num_considered=num_considered, c_visit=float(c_visit),
                      c_scale=float(c_scale), q_scratch=np.zeros(A, np.float64))


def decide(tree: Tree, gumbel: GumbelRoot, visits: np.ndarray, backend=kernels):
    """The action to play ([B]) and the improved-policy target ([B, A]) of searched Gumbel roots
    (kernels.gumbel_decide). `visits` [B, A]: the root children's visit counts."""
    B, A = gumbel.logits.shape
    actions = np.zeros(B, np.int64)
    target = np.empty((B, A), np.float64)
    args = (tree, gumbel, np.ascontiguousarray(visits, np.int64), actions, target)
    kernels.specialize(backend.gumbel_decide, *args)(*args)
    return actions, target


def improved_policy(tree: Tree, root_prior: np.ndarray, c_visit: float, c_scale: float,
                    backend=kernels) -> np.ndarray:
    """The improved-policy target softmax(log root_prior + sigma(q̂)) [B, A] of searched roots of
    any root rule (kernels.improved_policy): the target a pUCT search trains on under
    SearchConfig.policy_target="improved". `root_prior` [B, A]: the prior before root noise, whose
    logits the target improves on; the mixed value that completes unvisited actions weighs the
    visited ones by the prior as searched (with pUCT's root noise, as mctx's qtransform does)."""
    B, A = root_prior.shape
    with np.errstate(divide="ignore"):
        logits = np.where(tree.legal[:, ROOT], np.log(root_prior), -np.inf)
    target = np.empty((B, A), np.float64)
    args = (tree, np.ascontiguousarray(logits, np.float64), tree.leaf_value[:, ROOT].copy(), float(c_visit),
            float(c_scale), np.zeros(A, np.float64), target)
    kernels.specialize(backend.improved_policy, *args)(*args)
    return target
