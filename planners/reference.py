"""A pure-Python reference of the search kernels (planners/kernels.py): plain loops, no Numba.

Same function names, signatures and array layouts as the kernels, so that
`search.run_search(..., backend=reference)` runs the very same search; the tests check that both
backends build identical trees. It is slow and meant only to be read and compared against.

Selection at node s (N(s) visits), over the legal actions, ties to the lowest action:

    score(a) = prior(s, a) * (log((N(s) + c2 + 1) / c2) + c1) * sqrt(N(s)) / (1 + N(s, a))
               + clip01(minmax(Q(s, a)))
    Q(s, a)  = edge_reward(child) + discount * mean value(child)   if a has a child
             = mean value(s)                                       if not

Backup of a leaf value v along the path leaf -> root: every node on it gets one visit and the
discounted return from it (v at the leaf, edge_reward + discount * return above).
"""
from __future__ import annotations

import math

import numpy as np

from planners.kernels import (COL_LOGITS, COL_REWARD, COL_VALUE, SEL_ACTION, SEL_FLAT_NODE,
                              SEL_FLAT_SLOT, SEL_MODEL_ACTION, SEL_NODE)


def _minmax_clip(q, min_max_q, b):
    lo, hi = min_max_q[b, 0], min_max_q[b, 1]
    if hi > lo:
        q = (q - lo) / (hi - lo)
    return min(max(q, 0.0), 1.0)


def exploration_table(max_visits, pb_c_init, pb_c_base):
    """pUCT's exploration factor of a node by its visit count n = 0 .. max_visits."""
    return np.array([(math.log((n + pb_c_base + 1.0) / pb_c_base) + pb_c_init) * math.sqrt(n)
                     for n in range(max_visits + 1)])


def _puct_action(b, node, children, visit_count, value_sum, edge_reward, prior, legal, min_max_q,
                 discount, exploration_by_visits):
    n = visit_count[b, node]
    exploration = exploration_by_visits[n]
    parent_mean = value_sum[b, node] / n
    best_action, best_score = -1, -math.inf
    for a in range(prior.shape[2]):
        if not legal[b, node, a]:
            continue
        child = children[b, node, a]
        if child >= 0:
            child_visits = visit_count[b, child]
            q = edge_reward[b, child] + discount * (value_sum[b, child] / child_visits)
        else:
            child_visits = 0
            q = parent_mean
        score = exploration * prior[b, node, a] / (child_visits + 1) + _minmax_clip(q, min_max_q, b)
        if score > best_score:
            best_action, best_score = a, score
    return best_action


def select_puct(children, visit_count, value_sum, edge_reward, prior, legal, terminal, depth,
                num_nodes, min_max_q, discount, max_depth, exploration, sel):
    max_nodes = children.shape[1]
    for b in range(children.shape[0]):
        node, action = 0, -1
        # Descend until a node that is terminal or at the depth limit, or an unexpanded action.
        while not (terminal[b, node] or depth[b, node] >= max_depth):
            action = _puct_action(b, node, children, visit_count, value_sum, edge_reward, prior,
                                  legal, min_max_q, discount, exploration)
            if action == -1:  # no legal action: back this node up again
                break
            if children[b, node, action] == -1:  # expand this action
                break
            node, action = int(children[b, node, action]), -1
        sel[SEL_FLAT_NODE, b] = b * max_nodes + node
        sel[SEL_MODEL_ACTION, b] = max(action, 0)
        sel[SEL_FLAT_SLOT, b] = b * max_nodes + num_nodes[b]
        sel[SEL_NODE, b] = node
        sel[SEL_ACTION, b] = action


def _write_prior(b, node, packed, prior, legal, prior_mix, mask_column):
    num_actions = prior.shape[2]
    for a in range(num_actions):
        if mask_column >= 0 and packed[b, mask_column + a] <= 0.5:
            legal[b, node, a] = False
    actions = [a for a in range(num_actions) if legal[b, node, a]]
    if not actions:
        return
    logits = [float(packed[b, COL_LOGITS + a]) for a in actions]
    top = max(logits)
    learned_weight = prior_mix
    if top == -math.inf:  # no usable logit: uniform
        learned_weight, top = 0.0, 0.0
    total = sum(math.exp(x - top) for x in logits)
    for a, x in zip(actions, logits):
        learned = math.exp(x - top) / total if learned_weight > 0.0 else 0.0
        prior[b, node, a] = learned_weight * learned + (1.0 - learned_weight) / len(actions)


def init_roots(packed, terminal_column, mask_column, root_mask, prior_mix, visit_count, value_sum,
               leaf_value, prior, legal, terminal):
    for b in range(packed.shape[0]):
        is_terminal = terminal_column >= 0 and packed[b, terminal_column] > 0.5
        terminal[b, 0] = is_terminal
        leaf_value[b, 0] = 0.0 if is_terminal else packed[b, COL_VALUE]
        value_sum[b, 0] = leaf_value[b, 0]
        visit_count[b, 0] = 1
        for a in range(prior.shape[2]):
            legal[b, 0, a] = root_mask[b, a]
        _write_prior(b, 0, packed, prior, legal, prior_mix, mask_column)


def _backup(b, node, visit_count, value_sum, leaf_value, edge_reward, parent, min_max_q, discount):
    ret = leaf_value[b, node]
    while True:
        value_sum[b, node] += ret
        visit_count[b, node] += 1
        if node == 0:
            return
        q = edge_reward[b, node] + discount * (value_sum[b, node] / visit_count[b, node])
        min_max_q[b, 0] = min(min_max_q[b, 0], q)
        min_max_q[b, 1] = max(min_max_q[b, 1], q)
        ret = edge_reward[b, node] + discount * ret
        node = int(parent[b, node])


def expand_and_backup(sel, packed, terminal_column, mask_column, prior_mix, children, visit_count,
                      value_sum, leaf_value, edge_reward, prior, legal, terminal, depth, parent,
                      action_from_parent, num_nodes, min_max_q, discount):
    for b in range(sel.shape[1]):
        if sel[SEL_ACTION, b] >= 0 and not (math.isfinite(packed[b, COL_REWARD])
                                             and math.isfinite(packed[b, COL_VALUE])):
            return b
    for b in range(sel.shape[1]):
        node, action = int(sel[SEL_NODE, b]), int(sel[SEL_ACTION, b])
        if action >= 0:
            child = int(num_nodes[b])
            num_nodes[b] += 1
            children[b, node, action] = child
            parent[b, child] = node
            action_from_parent[b, child] = action
            depth[b, child] = depth[b, node] + 1
            edge_reward[b, child] = packed[b, COL_REWARD]
            is_terminal = terminal_column >= 0 and packed[b, terminal_column] > 0.5
            terminal[b, child] = is_terminal
            leaf_value[b, child] = 0.0 if is_terminal else packed[b, COL_VALUE]
            legal[b, child, :] = True
            _write_prior(b, child, packed, prior, legal, prior_mix, mask_column)
            node = child
        _backup(b, node, visit_count, value_sum, leaf_value, edge_reward, parent, min_max_q,
                discount)
    return -1


# ---------------------------------------------------------------- per search, not per simulation


def mix_root_noise(prior, legal, draws, fraction):
    for b in range(draws.shape[0]):
        actions = [a for a in range(draws.shape[1]) if legal[b, 0, a]]
        total = 0.0
        for a in actions:
            total += draws[b, a]
        if total > 0.0:
            for a in actions:
                prior[b, 0, a] = (1.0 - fraction) * prior[b, 0, a] + fraction * (draws[b, a] / total)


def root_child_stats(children, visit_count, value_sum, edge_reward, discount, node, visits, edge,
                     child_value, q):
    for b in range(children.shape[0]):
        for a in range(children.shape[2]):
            child = children[b, node, a]
            n = visit_count[b, child] if child >= 0 else 0
            visits[b, a] = n
            if n > 0:
                edge[b, a] = edge_reward[b, child]
                child_value[b, a] = value_sum[b, child] / n
                q[b, a] = edge[b, a] + discount * child_value[b, a]
            else:
                edge[b, a] = child_value[b, a] = q[b, a] = math.nan


def choose_actions(visits, legal, temperature, greedy, u, out):
    for b in range(visits.shape[0]):
        if visits[b].sum() > 0:
            weights = [float(v) for v in visits[b]]
        else:  # no visits (a terminal root): the legal actions alike
            weights = [1.0 if ok else 0.0 for ok in legal[b]]
        top = max(weights)
        if greedy or top == 0.0:
            out[b] = weights.index(top)  # the first maximum
            continue
        weights = [(w / top) ** (1.0 / temperature) for w in weights]
        mass = 0.0
        for w in weights:
            mass += w
        cdf, chosen = 0.0, 0
        for w in weights:  # inverse CDF: the number of actions whose cumulative mass is <= u
            cdf += w / mass
            if cdf <= u[b]:
                chosen += 1
        out[b] = min(chosen, len(weights) - 1)
