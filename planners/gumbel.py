"""Gumbel MuZero's root: sequential halving over Gumbel-perturbed actions (Danihelka et al. 2022,
as used by EfficientZero V2), with its improved-policy target.

The root of each tree draws g(a) ~ Gumbel(0, 1) once per search (zero without noise) and considers
the top m = min(gumbel_max_considered, legal actions) of g(a) + logits(a). The simulation budget is
spent in rounds of sequential halving; which visit count a considered action must have at
simulation k is a fixed table (as in mctx's `get_sequence_of_considered_visits`), so the root rule
is stateless: at simulation k visit the action with the highest g + logits + sigma(q̂) among those
with exactly table[k] visits. Below the root, selection is ordinary pUCT (kernels.puct_action).

sigma(q̂) = (c_visit + max_b N(b)) * c_scale * q̂, where q̂ is the root's Q completed with the
mixed value for unvisited actions, min-max rescaled over the root's actions (mctx's
`qtransform_completed_by_mix_value`). The action played is the highest g + logits + sigma(q̂) among
the most-visited actions; the policy target is softmax(logits + sigma(q̂)) over legal actions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from planners import kernels
from planners.tree import ROOT, Tree

_EPS = 1e-8


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


@njit(cache=True)
def select_gumbel(children, visit_count, value_sum, edge_reward, prior, legal, terminal, depth,
                  num_nodes, min_max_q, discount, max_depth, pb_c_init, pb_c_base, root_score,
                  root_raw_value, visit_table, num_considered, c_visit, c_scale, q_scratch, sel):
    """Like kernels.select_puct, with the root action chosen by sequential halving."""
    max_nodes = children.shape[1]
    num_actions = prior.shape[2]
    for b in range(children.shape[0]):
        node = 0
        action = -1
        if not kernels.is_leaf_for_good(b, node, terminal, depth, max_depth):
            # Every simulation backs up through the root, which starts with one visit of its own.
            simulation = min(visit_count[b, ROOT] - 1, visit_table.shape[1] - 1)
            target = visit_table[num_considered[b], simulation]
            max_visits = root_completed_q(b, children, visit_count, value_sum, edge_reward, prior,
                                          legal, discount, root_raw_value, q_scratch)
            scale = (c_visit + max_visits) * c_scale
            best_score = -np.inf
            for a in range(num_actions):
                if not legal[b, ROOT, a] or root_score[b, a] == -np.inf:
                    continue
                child = children[b, ROOT, a]
                visits = visit_count[b, child] if child >= 0 else 0
                score = root_score[b, a] + scale * q_scratch[a]
                if visits == target and score > best_score:
                    action = a
                    best_score = score
            if action < 0:  # every considered action is past the table (budget > schedule): pUCT
                action = kernels.puct_action(b, node, children, visit_count, value_sum, edge_reward,
                                             prior, legal, min_max_q, discount, pb_c_init, pb_c_base)
            if action >= 0 and children[b, node, action] >= 0:
                node = children[b, node, action]
                action = -1
                while not kernels.is_leaf_for_good(b, node, terminal, depth, max_depth):
                    action = kernels.puct_action(b, node, children, visit_count, value_sum,
                                                 edge_reward, prior, legal, min_max_q, discount,
                                                 pb_c_init, pb_c_base)
                    if action < 0 or children[b, node, action] < 0:
                        break
                    node = children[b, node, action]
                    action = -1
        kernels.write_selection(sel, b, node, action, num_nodes, max_nodes)


@njit(cache=True)
def root_completed_q(b, children, visit_count, value_sum, edge_reward, prior, legal, discount,
                     root_raw_value, out):
    """Root Q of tree `b` completed with mctx's mixed value for unvisited actions and min-max
    rescaled to [0, 1] over the legal root actions, written into `out` [A].
    Returns the largest visit count of a root child."""
    num_actions = prior.shape[2]
    sum_visits = 0
    max_visits = 0
    weighted_q = 0.0
    visited_prior = 0.0
    for a in range(num_actions):
        child = children[b, ROOT, a]
        if child >= 0 and visit_count[b, child] > 0:
            n = visit_count[b, child]
            out[a] = edge_reward[b, child] + discount * value_sum[b, child] / n
            sum_visits += n
            max_visits = max(max_visits, n)
            weighted_q += prior[b, ROOT, a] * out[a]
            visited_prior += prior[b, ROOT, a]
    mixed = root_raw_value[b]
    if sum_visits > 0:
        mixed = (root_raw_value[b] + sum_visits * weighted_q / max(visited_prior, _EPS)) \
            / (sum_visits + 1)
    lo = np.inf
    hi = -np.inf
    for a in range(num_actions):
        child = children[b, ROOT, a]
        if not (child >= 0 and visit_count[b, child] > 0):
            out[a] = mixed
        if legal[b, ROOT, a]:
            lo = min(lo, out[a])
            hi = max(hi, out[a])
    for a in range(num_actions):
        out[a] = (out[a] - lo) / max(hi - lo, _EPS)
    return max_visits


@dataclass
class RootGumbel:
    """The per-search Gumbel state of B roots: g + logits of the considered actions (-inf for the
    rest) and the roots' own value estimates, fixed before the first simulation."""

    root_score: np.ndarray  # [B, A] g(a) + log prior(a) for the top-m actions, -inf elsewhere
    logits: np.ndarray  # [B, A] log prior, -inf for illegal actions
    raw_value: np.ndarray  # [B] the root's leaf value (mctx's raw_value)

    @classmethod
    def draw(cls, tree: Tree, config, rng: np.random.Generator, add_noise: bool) -> "RootGumbel":
        legal = tree.legal[:, ROOT]
        with np.errstate(divide="ignore"):
            logits = np.where(legal, np.log(tree.prior[:, ROOT]), -np.inf)
        noise = rng.gumbel(size=logits.shape) if add_noise else np.zeros(logits.shape)
        score = logits + noise
        m = min(config.gumbel_max_considered, tree.num_actions)
        # Keep the m best-scoring legal actions; ties broken toward the lowest action (stable sort).
        order = np.argsort(-score, axis=1, kind="stable")
        considered = np.zeros_like(legal)
        np.put_along_axis(considered, order[:, :m], True, axis=1)
        considered &= legal
        return cls(root_score=np.where(considered, score, -np.inf), logits=logits,
                   raw_value=tree.leaf_value[:, ROOT].copy())

    def selector(self, tree: Tree, config):
        """The select function and its arguments (all but the trailing `sel`) for search._simulate."""
        num_considered = np.isfinite(self.root_score).sum(axis=1)
        # One schedule per possible number of considered actions (rows differ in legal actions).
        table = np.stack([considered_visit_table(m, config.num_simulations)
                          for m in range(int(num_considered.max()) + 1)])
        args = (tree.children, tree.visit_count, tree.value_sum, tree.edge_reward, tree.prior,
                tree.legal, tree.terminal, tree.depth, tree.num_nodes, tree.min_max_q,
                tree.discount, tree.max_depth, config.pb_c_init, config.pb_c_base, self.root_score,
                self.raw_value, table, num_considered.astype(np.int64), float(config.gumbel_c_visit), float(config.gumbel_c_scale),
                np.zeros(tree.num_actions, np.float64))
        return select_gumbel, args

    def decide(self, tree: Tree, config):
        """The action to play ([B]) and the improved-policy target ([B, A])."""
        B, A = self.logits.shape
        q = np.zeros(A, np.float64)
        actions = np.zeros(B, np.int64)
        target = np.zeros((B, A), np.float64)
        visits, _, _, _ = tree.child_stats(ROOT)
        for b in range(B):
            max_visits = root_completed_q(b, tree.children, tree.visit_count, tree.value_sum,
                                          tree.edge_reward, tree.prior, tree.legal, tree.discount,
                                          self.raw_value, q)
            sigma = (config.gumbel_c_visit + max_visits) * config.gumbel_c_scale * q
            legal = tree.legal[b, ROOT]
            most = legal & (visits[b] == visits[b][legal].max())
            actions[b] = int(np.argmax(np.where(most & np.isfinite(self.root_score[b]),
                                                self.root_score[b] + sigma, -np.inf))) \
                if np.isfinite(self.root_score[b][most]).any() \
                else int(np.argmax(np.where(most, self.logits[b] + sigma, -np.inf)))
            improved = np.where(legal, self.logits[b] + sigma, -np.inf)
            improved = np.exp(improved - improved.max())
            target[b] = improved / improved.sum()
        return actions, target
