"""A pure-Python reference of the search kernels (planners/kernels.py and the Gumbel root rule in
planners/gumbel.py): plain loops, no Numba.

Same function names, signatures and array layouts as the kernels, so that a search run with
`backend=reference` is the very same search; the tests check that both backends build identical
trees. It is slow and meant only to be read and compared against.

Selection at node s (N(s) visits), over the legal actions, ties to the lowest action:

    score(a) = prior(s, a) * (log((N(s) + c2 + 1) / c2) + c1) * sqrt(N(s)) / (1 + N(s, a))
               + clip01(minmax(Q(s, a)))
    Q(s, a)  = edge_reward(child) + discount * mean value(child)   if a has a child
             = mean value(s)                                       if not

Backup of a leaf value v along the path leaf -> root: every node on it gets one visit and the
discounted return from it (v at the leaf, edge_reward + discount * return above). A terminal node
is absorbing: it is never expanded, and its leaf value is the packed value, which the driver set
to the objective's terminal value.
"""
from __future__ import annotations

import math

import numpy as np

from planners.kernels import (COL_LOGITS, COL_REWARD, COL_VALUE, SEL_ACTION, SEL_FLAT_NODE,
                              SEL_FLAT_SLOT, SEL_MODEL_ACTION, SEL_NODE)

_EPS = 1e-8


def _minmax_clip(q, tree, b):
    lo, hi = tree.min_max_q[b, 0], tree.min_max_q[b, 1]
    if hi > lo:
        q = (q - lo) / (hi - lo)
    return min(max(q, 0.0), 1.0)


def exploration_table(max_visits, pb_c_init, pb_c_base):
    """pUCT's exploration factor of a node by its visit count n = 0 .. max_visits."""
    return np.array([(math.log((n + pb_c_base + 1.0) / pb_c_base) + pb_c_init) * math.sqrt(n)
                     for n in range(max_visits + 1)])


def puct_action(tree, b, node, exploration):
    n = tree.visit_count[b, node]
    parent_mean = tree.value_sum[b, node] / n
    best_action, best_score = -1, -math.inf
    for a in range(tree.prior.shape[2]):
        if not tree.legal[b, node, a]:
            continue
        child = tree.children[b, node, a]
        if child >= 0:
            child_visits = tree.visit_count[b, child]
            q = tree.edge_reward[b, child] + tree.discount * (tree.value_sum[b, child] / child_visits)
        else:
            child_visits = 0
            q = parent_mean
        score = exploration[n] * tree.prior[b, node, a] / (child_visits + 1) + _minmax_clip(q, tree, b)
        if score > best_score:
            best_action, best_score = a, score
    return best_action


def _write_selection(tree, sel, b, node, action):
    max_nodes = tree.children.shape[1]
    sel[SEL_FLAT_NODE, b] = b * max_nodes + node
    sel[SEL_MODEL_ACTION, b] = max(action, 0)
    sel[SEL_FLAT_SLOT, b] = b * max_nodes + tree.num_nodes[b]
    sel[SEL_NODE, b] = node
    sel[SEL_ACTION, b] = action


def _descend(tree, b, node, exploration, sel):
    action = -1
    # Descend until a node that is terminal or at the depth limit, or an unexpanded action.
    while not (tree.terminal[b, node] or tree.depth[b, node] >= tree.max_depth):
        action = puct_action(tree, b, node, exploration)
        if action == -1:  # no legal action: back this node up again
            break
        if tree.children[b, node, action] == -1:  # expand this action
            break
        node, action = int(tree.children[b, node, action]), -1
    _write_selection(tree, sel, b, node, action)


def select_puct(tree, exploration, sel):
    for b in range(tree.children.shape[0]):
        _descend(tree, b, 0, exploration, sel)


def root_completed_q(tree, b, raw_value, out):
    """Root Q completed with mctx's mixed value for unvisited actions, min-max rescaled."""
    A = tree.prior.shape[2]
    visited = [a for a in range(A) if tree.children[b, 0, a] >= 0
               and tree.visit_count[b, tree.children[b, 0, a]] > 0]
    sum_visits = max_visits = 0
    weighted_q = visited_prior = 0.0
    for a in visited:
        child = tree.children[b, 0, a]
        n = tree.visit_count[b, child]
        out[a] = tree.edge_reward[b, child] + tree.discount * tree.value_sum[b, child] / n
        sum_visits += n
        max_visits = max(max_visits, n)
        weighted_q += tree.prior[b, 0, a] * out[a]
        visited_prior += tree.prior[b, 0, a]
    mixed = raw_value[b]
    if sum_visits > 0:
        mixed = (raw_value[b] + sum_visits * weighted_q / max(visited_prior, _EPS)) / (sum_visits + 1)
    for a in range(A):
        if a not in visited:
            out[a] = mixed
    legal_q = [out[a] for a in range(A) if tree.legal[b, 0, a]]
    lo, hi = min(legal_q), max(legal_q)
    for a in range(A):
        out[a] = (out[a] - lo) / max(hi - lo, _EPS)
    return max_visits


def gumbel_consider(tree, noise, max_considered, logits, root_score, num_considered):
    """The Gumbel roots' considered actions: the best of log prior + noise that are legal."""
    legal = tree.legal[:, 0]
    with np.errstate(divide="ignore"):
        logits[:] = np.where(legal, np.log(tree.prior[:, 0]), -np.inf)
    score = logits + noise
    m = min(max_considered, logits.shape[1])
    # Keep the m best-scoring actions, ties toward the lowest action (a stable sort), if legal.
    order = np.argsort(-score, axis=1, kind="stable")
    considered = np.zeros_like(legal)
    np.put_along_axis(considered, order[:, :m], True, axis=1)
    considered &= legal
    num_considered[:] = considered.sum(axis=1)
    root_score[:] = np.where(considered, score, -np.inf)


def gumbel_decide(tree, gumbel, visits, actions, target):
    """The action to play and the improved-policy target of every searched Gumbel root."""
    B, A = target.shape
    for b in range(B):
        legal = tree.legal[b, 0]
        actions[b] = 0
        if not legal.any():  # a terminal root without actions: nothing was searched
            target[b] = 1.0 / A
            continue
        sigma = _improved_row(tree, b, gumbel.logits, gumbel.raw_value, gumbel.c_visit, gumbel.c_scale,
                              gumbel.q_scratch, target)
        most = legal & (visits[b] == visits[b][legal].max())
        score = gumbel.root_score[b]
        if np.isfinite(score[most]).any():
            actions[b] = int(np.argmax(np.where(most & np.isfinite(score), score + sigma, -np.inf)))
        else:
            actions[b] = int(np.argmax(np.where(most, gumbel.logits[b] + sigma, -np.inf)))


def improved_policy(tree, logits, raw_value, c_visit, c_scale, q, target):
    """The improved-policy target of every searched root (uniform where no action is legal)."""
    for b in range(target.shape[0]):
        if not tree.legal[b, 0].any():
            target[b] = 1.0 / target.shape[1]
        else:
            _improved_row(tree, b, logits, raw_value, c_visit, c_scale, q, target)


def _improved_row(tree, b, logits, raw_value, c_visit, c_scale, q, target):
    """softmax(logits + sigma(completed Q)) over root b's legal actions into target[b]; returns sigma [A]."""
    max_visits = root_completed_q(tree, b, raw_value, q)
    sigma = (c_visit + max_visits) * c_scale * q
    improved = np.where(tree.legal[b, 0], logits[b] + sigma, -np.inf)
    improved = np.exp(improved - improved.max())
    target[b] = improved / improved.sum()
    return sigma


def select_gumbel(tree, exploration, gumbel, sel):
    for b in range(tree.children.shape[0]):
        if tree.terminal[b, 0] or tree.depth[b, 0] >= tree.max_depth:
            _write_selection(tree, sel, b, 0, -1)
            continue
        simulation = min(tree.visit_count[b, 0] - 1, gumbel.visit_table.shape[1] - 1)
        target = gumbel.visit_table[gumbel.num_considered[b], simulation]
        max_visits = root_completed_q(tree, b, gumbel.raw_value, gumbel.q_scratch)
        scale = (gumbel.c_visit + max_visits) * gumbel.c_scale
        action, best_score = -1, -math.inf
        for a in range(tree.prior.shape[2]):  # the best-scoring considered action due for a visit
            if not tree.legal[b, 0, a] or gumbel.root_score[b, a] == -math.inf:
                continue
            child = tree.children[b, 0, a]
            visits = tree.visit_count[b, child] if child >= 0 else 0
            score = gumbel.root_score[b, a] + scale * gumbel.q_scratch[a]
            if visits == target and score > best_score:
                action, best_score = a, score
        if action < 0:
            action = puct_action(tree, b, 0, exploration)
        if action >= 0 and tree.children[b, 0, action] >= 0:
            _descend(tree, b, int(tree.children[b, 0, action]), exploration, sel)
        else:
            _write_selection(tree, sel, b, 0, action)


def _write_prior(tree, b, node, packed, prior_mix, mask_column):
    num_actions = tree.prior.shape[2]
    for a in range(num_actions):
        if mask_column >= 0 and packed[b, mask_column + a] <= 0.5:
            tree.legal[b, node, a] = False
    actions = [a for a in range(num_actions) if tree.legal[b, node, a]]
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
        tree.prior[b, node, a] = learned_weight * learned + (1.0 - learned_weight) / len(actions)


def init_roots(tree, packed, terminal_column, mask_column, root_mask, prior_mix):
    for b in range(packed.shape[0]):
        is_terminal = terminal_column >= 0 and packed[b, terminal_column] > 0.5
        tree.terminal[b, 0] = is_terminal
        tree.leaf_value[b, 0] = packed[b, COL_VALUE]
        tree.value_sum[b, 0] = tree.leaf_value[b, 0]
        tree.visit_count[b, 0] = 1
        for a in range(tree.prior.shape[2]):
            tree.legal[b, 0, a] = root_mask[b, a]
        _write_prior(tree, b, 0, packed, prior_mix, mask_column)


def _backup(tree, b, node):
    ret = tree.leaf_value[b, node]
    while True:
        tree.value_sum[b, node] += ret
        tree.visit_count[b, node] += 1
        if node == 0:
            return
        q = tree.edge_reward[b, node] + tree.discount * (tree.value_sum[b, node] / tree.visit_count[b, node])
        tree.min_max_q[b, 0] = min(tree.min_max_q[b, 0], q)
        tree.min_max_q[b, 1] = max(tree.min_max_q[b, 1], q)
        ret = tree.edge_reward[b, node] + tree.discount * ret
        node = int(tree.parent[b, node])


def expand_and_backup(tree, sel, packed, terminal_column, mask_column, prior_mix):
    for b in range(sel.shape[1]):
        if sel[SEL_ACTION, b] >= 0 and not (math.isfinite(packed[b, COL_REWARD])
                                             and math.isfinite(packed[b, COL_VALUE])):
            return b
    for b in range(sel.shape[1]):
        node, action = int(sel[SEL_NODE, b]), int(sel[SEL_ACTION, b])
        if action >= 0:
            child = int(tree.num_nodes[b])
            tree.num_nodes[b] += 1
            tree.children[b, node, action] = child
            tree.parent[b, child] = node
            tree.action_from_parent[b, child] = action
            tree.depth[b, child] = tree.depth[b, node] + 1
            tree.edge_reward[b, child] = packed[b, COL_REWARD]
            is_terminal = terminal_column >= 0 and packed[b, terminal_column] > 0.5
            tree.terminal[b, child] = is_terminal
            tree.leaf_value[b, child] = packed[b, COL_VALUE]
            tree.legal[b, child, :] = True
            _write_prior(tree, b, child, packed, prior_mix, mask_column)
            node = child
        _backup(tree, b, node)
    return -1


# ---------------------------------------------------------------- per search, not per simulation


def mix_root_noise(tree, draws, fraction):
    for b in range(draws.shape[0]):
        actions = [a for a in range(draws.shape[1]) if tree.legal[b, 0, a]]
        total = 0.0
        for a in actions:
            total += draws[b, a]
        if total > 0.0:
            for a in actions:
                tree.prior[b, 0, a] = (1.0 - fraction) * tree.prior[b, 0, a] + fraction * (draws[b, a] / total)


def child_stats(tree, node, visits, edge, child_value, q):
    for b in range(tree.children.shape[0]):
        for a in range(tree.children.shape[2]):
            child = tree.children[b, node, a]
            n = tree.visit_count[b, child] if child >= 0 else 0
            visits[b, a] = n
            if n > 0:
                edge[b, a] = tree.edge_reward[b, child]
                child_value[b, a] = tree.value_sum[b, child] / n
                q[b, a] = edge[b, a] + tree.discount * child_value[b, a]
            else:
                edge[b, a] = child_value[b, a] = q[b, a] = math.nan


def choose_actions(visits, q, legal, temperature, greedy, u, out):
    for b in range(visits.shape[0]):
        visited = visits[b].sum() > 0
        if visited:
            weights = [float(v) for v in visits[b]]
        else:  # no visits (a terminal root): the legal actions alike
            weights = [1.0 if ok else 0.0 for ok in legal[b]]
        top = max(weights)
        if greedy or top == 0.0:
            tied = [a for a, w in enumerate(weights) if w == top]
            # the most visited; on a tie the highest root Q, then the first
            out[b] = max(tied, key=lambda a: (q[b, a], -a)) if visited and top > 0.0 else tied[0]
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


def deepest(tree):
    return np.array([max(int(tree.depth[b, n]) for n in range(int(tree.num_nodes[b])))
                     for b in range(tree.depth.shape[0])], np.int64)
