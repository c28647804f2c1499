"""Numba kernels of the batched search: one call selects a leaf in every tree, one call expands
and backs up every path. Python loops over B never run per simulation. Every kernel takes the
`Tree` record (planners/tree.py) whole; `planners/reference.py` is their pure-Python twin.

Helpers called inside a kernel are `inline="always"`: Numba does not inline calls between
separately compiled functions by itself, and selection is the hottest loop of the search.

Selection (MuZero pUCT with EfficientZero's conventions), at node s with N(s) visits:

    score(a) = prior(s, a) * (log((N(s) + c2 + 1) / c2) + c1) * sqrt(N(s)) / (1 + N(s, a))
               + clip01(normalize(Q(s, a)))
    Q(s, a)  = edge_reward(s, a) + discount * value_sum(child) / N(child)     if a was visited
             = value_sum(s) / N(s)   (the parent's current mean value)        if not

`normalize` is MuZero's per-tree min-max over the Q values seen in backups (identity until two
different values were seen). Giving an unvisited child its parent's mean (EfficientZero's rule)
instead of 0 keeps the search from being pessimistic or optimistic about untried actions
depending on the sign of the objective. Illegal actions are never scored; ties go to the lowest
action, so the search is deterministic without noise.

A selected path stops at a node that is terminal, at the objective's depth limit, or without a
legal action: such a node is never expanded and its stored leaf value is backed up again
(`sel[SEL_ACTION] == -1`; the batched model call still gets a placeholder row for that tree, and
its output is ignored). A terminal node is absorbing: its leaf value is the objective's terminal
value (packed by the driver in the value column; 0 for objectives of rewards, see
`Objective.terminal_value`) and nothing below it is ever created, so no reward or value from
beyond it reaches the backup. The exploration factor comes from `exploration_table`, computed
once per search, so selection takes no log per node.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# Rows of the int64 selection array `sel` [SEL_ROWS, B] shared by select and backup. The first
# three rows go to the model's device as one tensor: they index the latent pool flattened to
# [B * N, *latent_shape].
SEL_FLAT_NODE = 0  # b * N + node: latent of the node to expand
SEL_MODEL_ACTION = 1  # action handed to the model (0 for a row that needs no model call)
SEL_FLAT_SLOT = 2  # b * N + free slot: where the new latent goes
SEL_NODE = 3  # node reached by selection
SEL_ACTION = 4  # action to expand from SEL_NODE, or -1: back up SEL_NODE's leaf value again
SEL_ROWS = 5

# Columns of the float64 array `packed` [B, 3 + 2A] the driver fills on the host once per
# simulation: edge reward, leaf value (the objective's terminal value in rows the model says are
# terminal), policy logits (A), then the model's terminal flag (1) and action mask (A); the kernels
# get the last two columns' positions, or -1 when the model has none.
COL_REWARD = 0
COL_VALUE = 1
COL_LOGITS = 2


# ---------------------------------------------------------------- pUCT selection


@njit(cache=True, inline="always")
def exploration_weight(visits, pb_c_init, pb_c_base):
    """pUCT's exploration factor of a node with `visits` visits (before prior / (1 + N(s, a)))."""
    return (math.log((visits + pb_c_base + 1.0) / pb_c_base) + pb_c_init) * math.sqrt(visits)


@njit(cache=True)
def exploration_table(max_visits, pb_c_init, pb_c_base):
    """exploration_weight(n) for n = 0 .. max_visits, so that selection needs no log per node."""
    table = np.empty(max_visits + 1, np.float64)
    for n in range(max_visits + 1):
        table[n] = exploration_weight(n, pb_c_init, pb_c_base)
    return table


@njit(cache=True, inline="always")
def puct_action(b, node, exploration, children, visit_count, value_sum, edge_reward, prior, legal,
                min_max_q, discount):
    """The legal action of highest pUCT score at `node` of tree `b`; -1 if none is legal.
    The tree's min-max range is read once: q -> clip01((q - lo) / (hi - lo)), identity while
    hi <= lo (MuZero's normalization, clipped like EfficientZero)."""
    lo = min_max_q[b, 0]
    hi = min_max_q[b, 1]
    weight = exploration[visit_count[b, node]]
    unvisited_q = value_sum[b, node] / visit_count[b, node]
    if hi > lo:
        unvisited_q = (unvisited_q - lo) / (hi - lo)
    unvisited_q = min(max(unvisited_q, 0.0), 1.0)
    best = -1
    best_score = -np.inf
    for a in range(prior.shape[2]):
        if not legal[b, node, a]:
            continue
        child = children[b, node, a]
        if child >= 0:
            child_visits = visit_count[b, child]
            q = edge_reward[b, child] + discount * (value_sum[b, child] / child_visits)
            if hi > lo:
                q = (q - lo) / (hi - lo)
            value_score = min(max(q, 0.0), 1.0)
        else:
            child_visits = 0
            value_score = unvisited_q
        score = weight * prior[b, node, a] / (child_visits + 1) + value_score
        if score > best_score:
            best = a
            best_score = score
    return best


@njit(cache=True, inline="always")
def write_selection(sel, b, node, action, num_nodes, max_nodes):
    sel[SEL_FLAT_NODE, b] = b * max_nodes + node
    sel[SEL_MODEL_ACTION, b] = max(action, 0)
    sel[SEL_FLAT_SLOT, b] = b * max_nodes + num_nodes[b]
    sel[SEL_NODE, b] = node
    sel[SEL_ACTION, b] = action


@njit(cache=True, inline="always")
def descend(start, exploration, sel, children, visit_count, value_sum, edge_reward, prior, legal,
            terminal, depth, num_nodes, min_max_q, discount, max_depth):
    """From node start[b] of every tree b with start[b] >= 0, follow pUCT down to a leaf and write
    the selection into `sel` (rows with start[b] < 0 were written by the root rule): the interior
    rule of every root rule. Takes the tree's arrays, bound once per kernel call."""
    for b in range(children.shape[0]):
        node = start[b]
        if node < 0:
            continue
        action = -1
        while not (terminal[b, node] or depth[b, node] >= max_depth):
            action = puct_action(b, node, exploration, children, visit_count, value_sum, edge_reward, prior,
                                 legal, min_max_q, discount)
            if action < 0 or children[b, node, action] < 0:
                break
            node = children[b, node, action]
            action = -1
        write_selection(sel, b, node, action, num_nodes, children.shape[1])


@njit(cache=True)
def select_puct(tree, exploration, sel):
    """Descend every tree from the root by pUCT; write the result into `sel` [SEL_ROWS, B].
    exploration: `exploration_table(N, c1, c2)` (a node has at most N visits).

    Kernels bind the record's fields to locals once per call and pass arrays to their helpers:
    every binding of an array costs reference-count updates, which per tree or per node would
    outweigh the selection itself."""
    children, visit_count, value_sum, edge_reward = tree.children, tree.visit_count, tree.value_sum, tree.edge_reward
    prior, legal, terminal, depth = tree.prior, tree.legal, tree.terminal, tree.depth
    num_nodes, min_max_q, discount, max_depth = tree.num_nodes, tree.min_max_q, tree.discount, tree.max_depth
    descend(np.zeros(children.shape[0], np.int64), exploration, sel, children, visit_count, value_sum,
            edge_reward, prior, legal, terminal, depth, num_nodes, min_max_q, discount, max_depth)


# ---------------------------------------------------------------- Gumbel root selection

_EPS = 1e-8  # floor of the completed-Q range (mctx's)


@njit(cache=True, inline="always")
def completed_q(b, children, visit_count, value_sum, edge_reward, prior, legal, discount, raw_value, out):
    """Root Q of tree `b` completed with mctx's mixed value for unvisited actions and min-max
    rescaled to [0, 1] over the legal root actions, written into `out` [A].
    Returns the largest visit count of a root child."""
    num_actions = prior.shape[2]
    sum_visits = 0
    max_visits = 0
    weighted_q = 0.0
    visited_prior = 0.0
    for a in range(num_actions):
        child = children[b, 0, a]
        if child >= 0 and visit_count[b, child] > 0:
            n = visit_count[b, child]
            out[a] = edge_reward[b, child] + discount * value_sum[b, child] / n
            sum_visits += n
            max_visits = max(max_visits, n)
            weighted_q += prior[b, 0, a] * out[a]
            visited_prior += prior[b, 0, a]
    mixed = raw_value[b]
    if sum_visits > 0:
        mixed = (raw_value[b] + sum_visits * weighted_q / max(visited_prior, _EPS)) / (sum_visits + 1)
    lo = np.inf
    hi = -np.inf
    for a in range(num_actions):
        child = children[b, 0, a]
        if not (child >= 0 and visit_count[b, child] > 0):
            out[a] = mixed
        if legal[b, 0, a]:
            lo = min(lo, out[a])
            hi = max(hi, out[a])
    for a in range(num_actions):
        out[a] = (out[a] - lo) / max(hi - lo, _EPS)
    return max_visits


@njit(cache=True)
def root_completed_q(tree, b, raw_value, out):
    """`completed_q` of tree `b`'s root (for the policy's final decision)."""
    return completed_q(b, tree.children, tree.visit_count, tree.value_sum, tree.edge_reward, tree.prior,
                       tree.legal, tree.discount, raw_value, out)


@njit(cache=True)
def gumbel_consider(tree, noise, max_considered, logits, root_score, num_considered):
    """The Gumbel roots' considered actions: the `max_considered` best of log prior + noise
    (ties to the lowest action) that are legal. Writes logits [B, A] (log prior, -inf where
    illegal), root_score [B, A] (log prior + noise where considered, -inf elsewhere) and
    num_considered [B]."""
    num_actions = logits.shape[1]
    chosen = np.zeros(num_actions, np.bool_)
    for b in range(logits.shape[0]):
        for a in range(num_actions):
            legal = tree.legal[b, 0, a]
            logits[b, a] = math.log(tree.prior[b, 0, a]) if legal else -np.inf
            root_score[b, a] = logits[b, a] + noise[b, a]
            chosen[a] = False
        for _ in range(min(max_considered, num_actions)):
            pick = -1
            for a in range(num_actions):
                if not chosen[a] and (pick < 0 or root_score[b, a] > root_score[b, pick]):
                    pick = a
            chosen[pick] = True
        num_considered[b] = 0
        for a in range(num_actions):
            if chosen[a] and tree.legal[b, 0, a]:
                num_considered[b] += 1
            else:
                root_score[b, a] = -np.inf


@njit(cache=True, inline="always")
def improved_row(tree, b, logits, raw_value, c_visit, c_scale, q, target):
    """Gumbel MuZero's improved policy softmax(logits + sigma(q̂)) of tree `b`'s root over its legal
    actions into target[b]: q̂ is the root's completed Q (`completed_q`, left in `q` [A]) and
    sigma(q̂) = (c_visit + max visits) * c_scale * q̂. Returns that scale. The root must have a
    legal action."""
    num_actions = target.shape[1]
    max_visits = root_completed_q(tree, b, raw_value, q)
    scale = (c_visit + max_visits) * c_scale
    top = -np.inf
    for a in range(num_actions):
        target[b, a] = logits[b, a] + scale * q[a] if tree.legal[b, 0, a] else -np.inf
        top = max(top, target[b, a])
    mass = 0.0
    for a in range(num_actions):
        target[b, a] = math.exp(target[b, a] - top)
        mass += target[b, a]
    for a in range(num_actions):
        target[b, a] /= mass
    return scale


@njit(cache=True, inline="always")
def has_legal_root_action(tree, b):
    for a in range(tree.legal.shape[2]):
        if tree.legal[b, 0, a]:
            return True
    return False


@njit(cache=True)
def improved_policy(tree, logits, raw_value, c_visit, c_scale, q, target):
    """`improved_row` of every searched root into target [B, A]; a root without legal actions
    (terminal, never searched) targets its actions alike. For a pUCT search, whose target it can
    be too (SearchConfig.policy_target)."""
    num_actions = target.shape[1]
    for b in range(target.shape[0]):
        if not has_legal_root_action(tree, b):
            for a in range(num_actions):
                target[b, a] = 1.0 / num_actions
            continue
        improved_row(tree, b, logits, raw_value, c_visit, c_scale, q, target)


@njit(cache=True)
def gumbel_decide(tree, gumbel, visits, actions, target):
    """The action to play of every searched Gumbel root (the highest g + logits + sigma(q̂) among
    its most-visited actions; logits + sigma where none of those was considered) into
    actions [B], and the improved-policy target (`improved_row`) into target [B, A].
    A root without legal actions (terminal, never searched) targets its actions alike."""
    num_actions = target.shape[1]
    q = gumbel.q_scratch
    for b in range(target.shape[0]):
        most = -1
        for a in range(num_actions):
            if tree.legal[b, 0, a]:
                most = max(most, visits[b, a])
        actions[b] = 0
        if most < 0:
            for a in range(num_actions):
                target[b, a] = 1.0 / num_actions
            continue
        scale = improved_row(tree, b, gumbel.logits, gumbel.raw_value, gumbel.c_visit, gumbel.c_scale, q, target)
        any_considered = False
        for a in range(num_actions):
            if tree.legal[b, 0, a] and visits[b, a] == most and np.isfinite(gumbel.root_score[b, a]):
                any_considered = True
        best = -np.inf
        for a in range(num_actions):
            if not (tree.legal[b, 0, a] and visits[b, a] == most):
                continue
            if any_considered:
                if not np.isfinite(gumbel.root_score[b, a]):
                    continue
                score = gumbel.root_score[b, a] + scale * q[a]
            else:
                score = gumbel.logits[b, a] + scale * q[a]
            if score > best:
                best = score
                actions[b] = a


@njit(cache=True)
def select_gumbel(tree, exploration, gumbel, sel):
    """Like select_puct, with the root action chosen by sequential halving."""
    children, visit_count, value_sum, edge_reward = tree.children, tree.visit_count, tree.value_sum, tree.edge_reward
    prior, legal, terminal, depth = tree.prior, tree.legal, tree.terminal, tree.depth
    num_nodes, min_max_q, discount, max_depth = tree.num_nodes, tree.min_max_q, tree.discount, tree.max_depth
    root_score, q = gumbel.root_score, gumbel.q_scratch
    start = np.full(children.shape[0], -1, np.int64)  # where pUCT takes over below the root
    for b in range(children.shape[0]):
        if terminal[b, 0] or max_depth <= 0:
            write_selection(sel, b, 0, -1, num_nodes, children.shape[1])
            continue
        # Every simulation backs up through the root, which starts with one visit of its own.
        simulation = min(visit_count[b, 0] - 1, gumbel.visit_table.shape[1] - 1)
        target = gumbel.visit_table[gumbel.num_considered[b], simulation]
        max_visits = completed_q(b, children, visit_count, value_sum, edge_reward, prior, legal, discount,
                                 gumbel.raw_value, q)
        scale = (gumbel.c_visit + max_visits) * gumbel.c_scale
        action = -1
        best_score = -np.inf
        for a in range(prior.shape[2]):
            if not legal[b, 0, a] or root_score[b, a] == -np.inf:
                continue
            child = children[b, 0, a]
            visits = visit_count[b, child] if child >= 0 else 0
            score = root_score[b, a] + scale * q[a]
            if visits == target and score > best_score:
                action = a
                best_score = score
        if action < 0:  # every considered action is past the table (budget > schedule): pUCT
            action = puct_action(b, 0, exploration, children, visit_count, value_sum, edge_reward, prior, legal,
                                 min_max_q, discount)
        if action >= 0 and children[b, 0, action] >= 0:
            start[b] = children[b, 0, action]
        else:
            write_selection(sel, b, 0, action, num_nodes, children.shape[1])
    descend(start, exploration, sel, children, visit_count, value_sum, edge_reward, prior, legal, terminal,
            depth, num_nodes, min_max_q, discount, max_depth)


# ---------------------------------------------------------------- expansion and backup


@njit(cache=True, inline="always")
def write_prior(b, node, packed, prior, legal, prior_mix, mask_column):
    """Prior of a new node from the model's logits: softmax over the legal actions, mixed with
    the uniform distribution over them (prior_mix = 1: learned only). ANDs the model's action mask
    (from column `mask_column`, -1 if the model gives none) into `legal`, which the caller has
    preset (all True, or the root mask)."""
    num_actions = prior.shape[2]
    num_legal = 0
    top = -np.inf
    for a in range(num_actions):
        if mask_column >= 0 and packed[b, mask_column + a] <= 0.5:
            legal[b, node, a] = False
        if legal[b, node, a]:
            num_legal += 1
            top = max(top, packed[b, COL_LOGITS + a])
    if num_legal == 0:
        return
    if top == -np.inf:  # every legal logit is -inf: fall back to uniform
        learned_weight = 0.0
        top = 0.0
    else:
        learned_weight = prior_mix
    total = 0.0
    for a in range(num_actions):
        if legal[b, node, a]:
            total += math.exp(packed[b, COL_LOGITS + a] - top)
    for a in range(num_actions):
        if legal[b, node, a]:
            learned = math.exp(packed[b, COL_LOGITS + a] - top) / total if learned_weight > 0.0 else 0.0
            prior[b, node, a] = learned_weight * learned + (1.0 - learned_weight) / num_legal


@njit(cache=True)
def init_roots(tree, packed, terminal_column, mask_column, root_mask, prior_mix):
    """Write node 0 of every tree from the root model output; the root counts as visited once with
    its own leaf value (as in mctx; a terminal root's is its terminal value), so the first
    selection already weighs the priors."""
    for b in range(packed.shape[0]):
        is_terminal = terminal_column >= 0 and packed[b, terminal_column] > 0.5
        tree.terminal[b, 0] = is_terminal
        tree.leaf_value[b, 0] = packed[b, COL_VALUE]
        tree.value_sum[b, 0] = tree.leaf_value[b, 0]
        tree.visit_count[b, 0] = 1
        for a in range(tree.prior.shape[2]):
            tree.legal[b, 0, a] = root_mask[b, a]
        write_prior(b, 0, packed, tree.prior, tree.legal, prior_mix, mask_column)


@njit(cache=True, inline="always")
def backup(b, node, visit_count, value_sum, leaf_value, edge_reward, parent, min_max_q, discount):
    """Back the leaf value of `node` up to the root of tree `b` (discounted, edge rewards added on
    the way) and widen the tree's min-max Q range with every child's new Q."""
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
        node = parent[b, node]


@njit(cache=True, inline="always")
def first_bad_row(sel, packed):
    """First tree whose new edge reward or leaf value is not finite, -1 if none (rows that need no
    model call are ignored: their model output is a placeholder)."""
    for b in range(sel.shape[1]):
        if sel[SEL_ACTION, b] >= 0 and not (np.isfinite(packed[b, COL_REWARD])
                                             and np.isfinite(packed[b, COL_VALUE])):
            return b
    return -1


@njit(cache=True)
def expand_and_backup(tree, sel, packed, terminal_column, mask_column, prior_mix):
    """Add the selected child to every tree that needs one, then back up every path.

    Returns the first tree whose objective output is not finite (nothing is modified then), or -1.
    """
    bad = first_bad_row(sel, packed)
    if bad >= 0:
        return bad
    # Bound once per call (see `select_puct`).
    visit_count, value_sum, leaf_value, edge_reward = tree.visit_count, tree.value_sum, tree.leaf_value, tree.edge_reward
    prior, legal, parent, num_nodes, min_max_q = tree.prior, tree.legal, tree.parent, tree.num_nodes, tree.min_max_q
    children, depth, terminal, discount = tree.children, tree.depth, tree.terminal, tree.discount
    action_from_parent = tree.action_from_parent
    for b in range(sel.shape[1]):
        node = sel[SEL_NODE, b]
        action = sel[SEL_ACTION, b]
        if action >= 0:
            child = num_nodes[b]
            num_nodes[b] += 1
            children[b, node, action] = child
            parent[b, child] = node
            action_from_parent[b, child] = action
            depth[b, child] = depth[b, node] + 1
            edge_reward[b, child] = packed[b, COL_REWARD]
            is_terminal = terminal_column >= 0 and packed[b, terminal_column] > 0.5
            terminal[b, child] = is_terminal
            leaf_value[b, child] = packed[b, COL_VALUE]
            legal[b, child, :] = True
            write_prior(b, child, packed, prior, legal, prior_mix, mask_column)
            node = child
        backup(b, node, visit_count, value_sum, leaf_value, edge_reward, parent, min_max_q, discount)
    return -1


# ---------------------------------------------------------------- per search, not per simulation


@njit(cache=True)
def mix_root_noise(tree, draws, fraction):
    """Mix Dirichlet noise into the root prior of every tree: `draws` [B, A] are Gamma(alpha)
    draws, normalized over the legal root actions (normalized Gamma draws are Dirichlet). A tree
    whose legal draws are all 0 keeps its prior."""
    prior, legal = tree.prior, tree.legal
    for b in range(draws.shape[0]):
        total = 0.0
        for a in range(draws.shape[1]):
            if legal[b, 0, a]:
                total += draws[b, a]
        if total > 0.0:
            for a in range(draws.shape[1]):
                if legal[b, 0, a]:
                    prior[b, 0, a] = (1.0 - fraction) * prior[b, 0, a] + fraction * (draws[b, a] / total)


@njit(cache=True)
def child_stats(tree, node, visits, edge, child_value, q):
    """Per action of `node` in every tree: visits, edge reward, mean child value and
    q = edge + discount * child value, written into the [B, A] outputs (nan where unvisited)."""
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
                edge[b, a] = np.nan
                child_value[b, a] = np.nan
                q[b, a] = np.nan


@njit(cache=True)
def choose_actions(visits, q, legal, temperature, greedy, u, out):
    """The action of every tree: the most visited when `greedy` (on a tie, the one of highest
    root Q, then the lowest), else a sample of visits^(1/temperature) by the uniform draw u[b].
    A tree without root visits (a terminal root) weighs its legal actions alike."""
    num_actions = visits.shape[1]
    weights = np.empty(num_actions, np.float64)
    for b in range(visits.shape[0]):
        total = 0
        for a in range(num_actions):
            total += visits[b, a]
        top = 0.0
        best = 0
        for a in range(num_actions):
            weights[a] = visits[b, a] if total > 0 else (1.0 if legal[b, a] else 0.0)
            # Few simulations tie often (4 and 4 of 8); the search's value estimate then decides.
            if weights[a] > top or (weights[a] == top and total > 0 and top > 0.0 and q[b, a] > q[b, best]):
                top = weights[a]
                best = a
        if greedy or top == 0.0:
            out[b] = best
            continue
        # Scaled by the row maximum before the power so that small temperatures cannot overflow.
        mass = 0.0
        for a in range(num_actions):
            weights[a] = (weights[a] / top) ** (1.0 / temperature)
            mass += weights[a]
        cdf = 0.0
        chosen = 0
        for a in range(num_actions):
            cdf += weights[a] / mass
            if cdf <= u[b]:
                chosen += 1
        out[b] = min(chosen, num_actions - 1)


@njit(cache=True)
def deepest(tree):
    """Largest node depth in use in every tree, [B]."""
    out = np.zeros(tree.depth.shape[0], np.int64)
    for b in range(tree.depth.shape[0]):
        for node in range(tree.num_nodes[b]):
            out[b] = max(out[b], tree.depth[b, node])
    return out


# ---------------------------------------------------------------- calling kernels from the driver

_ENTRY_POINTS: dict = {}


def specialize(kernel, *args):
    """`kernel` compiled for the types of `args`, as a function that skips Numba's per-call type
    dispatch (which, for the Tree record, costs more than the kernel's own work at B=1).

    Resolved once per kernel and argument fingerprint (the classes and dtypes of `args`), so a
    caller must hand a kernel C-contiguous arrays of fixed dimensions, as the search does
    (Tree.allocate's arrays, float64 packed rows, int64 selections, root masks made C-contiguous
    by `search`): an array of another layout would be read as the first one's. A pure-Python
    kernel (planners/reference.py) is returned as it is."""
    compile_for = getattr(kernel, "compile", None)
    if compile_for is None:
        return kernel
    # type() first: getattr(a, "dtype", ...) on a record or a number raises and catches an
    # AttributeError inside, which cost more than the kernel call it was guarding at B = 1.
    key = (kernel, tuple([a.dtype if type(a) is np.ndarray else type(a) for a in args]))
    entry = _ENTRY_POINTS.get(key)
    if entry is None:
        from numba import typeof
        entry = _ENTRY_POINTS[key] = compile_for(tuple(typeof(a) for a in args))
    return entry
