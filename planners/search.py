"""The batched search driver: B trees, one model call per simulation.

Per simulation the Python glue is: one select kernel call, one `model.recurrent_inference` on the
whole batch, one `edge_reward` / `leaf_value` pair from the objective, one copy of the scalars to
the host, one expand-and-backup kernel call. Latents stay on the model's device in one pool whose
slots are the tree's node indices.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
import numpy as np
import torch

from nets.output import ModelOutput
from planners import gumbel, kernels
from planners.config import SearchConfig
from planners.objectives import Objective
from planners.tree import ROOT, Tree


@dataclass
class SearchResult:
    """What the search found, per environment (numpy arrays, B rows, A actions)."""

    visit_counts: np.ndarray  # [B, A] visits of each root action
    q_values: np.ndarray  # [B, A] edge_reward + discount * child_value; nan where unvisited
    root_value: np.ndarray  # [B] mean backed-up value of the root
    action: np.ndarray  # [B] chosen action
    policy_target: np.ndarray  # [B, A] distribution to train the policy on
    prior: np.ndarray  # [B, A] root prior the search used (masked, mixed, before root noise)
    edge_reward: np.ndarray  # [B, A] objective.edge_reward of each root action; nan where unvisited
    child_value: np.ndarray  # [B, A] mean backed-up value of each root child; nan where unvisited
    max_depth: np.ndarray  # [B] deepest node of each tree
    tree: Tree


def search(model, objective: Objective, root, config: SearchConfig, *, rng: np.random.Generator,
           add_noise: bool = True, action_mask=None, temperature: float = 1.0,
           deterministic: bool = False) -> SearchResult:
    """Plan from B roots at once and choose an action for each.

    root: an observation batch (then `model.initial_inference(root)` is called) or a ModelOutput.
    rng: the only source of randomness (root noise, Gumbel noise, action sampling).
    add_noise: Dirichlet noise on the root prior (pUCT) / Gumbel noise on the root logits (gumbel).
    action_mask: [B, A] bool, legal actions at the root (ANDed with the model's own mask, if any).
    temperature / deterministic: pUCT acts by sampling visits^(1/temperature), or the most visited
    action when deterministic (lowest action on ties). Gumbel acts by its own rule (the Gumbel
    noise already randomizes it), so these two only matter for pUCT.
    """
    return run_search(model, objective, root, config, rng=rng, add_noise=add_noise,
                      action_mask=action_mask, temperature=temperature, deterministic=deterministic,
                      backend=kernels)


def run_search(model, objective, root, config, *, rng, add_noise, action_mask, temperature,
               deterministic, backend: ModuleType) -> SearchResult:
    """`search` with the select / init / backup functions taken from `backend` (the Numba kernels,
    or the pure-Python reference that tests compare them with)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    with torch.no_grad():
        root_out = root if isinstance(root, ModelOutput) else model.initial_inference(root)
        B, A = root_out.policy_logits.shape
        tree = Tree.allocate(B, config.num_simulations + 1, A, objective.discount,
                             _depth_limit(objective, config))
        root_mask = _root_mask(action_mask, B, A)
        root_value = _checked(objective.leaf_value(model, root_out), "leaf_value", objective, B)
        if not bool(torch.isfinite(root_value).all()):
            bad = int(torch.nonzero(~torch.isfinite(root_value))[0, 0])
            raise ValueError(f"objective {objective.describe()!r} returned a non-finite leaf value "
                             f"({float(root_value[bad])}) at the root of tree {bad}")
        packed, terminal_column, mask_column = _pack(root_out.reward, root_value, root_out)
        backend.init_roots(packed, terminal_column, mask_column, root_mask, config.prior_mix(),
                           tree.visit_count, tree.value_sum, tree.leaf_value, tree.prior, tree.legal,
                           tree.terminal)
        stuck = ~tree.legal[:, ROOT].any(axis=1) & ~tree.terminal[:, ROOT]
        if stuck.any():
            raise ValueError("every root that is not terminal needs at least one legal action (check "
                             "action_mask and the model's action_mask); rows without one: "
                             f"{np.flatnonzero(stuck).tolist()}")
        root_prior = tree.prior[:, ROOT].copy()
        if config.algorithm == "gumbel":
            root_gumbel = gumbel.RootGumbel.draw(tree, config, rng, add_noise)
            select, select_args = root_gumbel.selector(tree, config)
        else:
            if add_noise:
                _add_dirichlet_noise(tree, config, rng)
            select = backend.select_puct
            select_args = (tree.children, tree.visit_count, tree.value_sum, tree.edge_reward,
                           tree.prior, tree.legal, tree.terminal, tree.depth, tree.num_nodes,
                           tree.min_max_q, tree.discount, tree.max_depth, config.pb_c_init,
                           config.pb_c_base)
        _simulate(model, objective, root_out, tree, config, select, select_args, backend)

    visits, edge_reward, child_value, q_values = tree.child_stats(ROOT)
    if config.algorithm == "gumbel":
        action, policy_target = root_gumbel.decide(tree, config)
    else:
        total = visits.sum(axis=1, keepdims=True)
        policy_target = np.where(total > 0, visits / np.maximum(total, 1), root_prior)
        action = _act(visits, tree.legal[:, ROOT], temperature, deterministic, rng)
    return SearchResult(visit_counts=visits, q_values=q_values, root_value=tree.node_value(ROOT),
                        action=action, policy_target=policy_target, prior=root_prior,
                        edge_reward=edge_reward, child_value=child_value,
                        max_depth=tree.deepest(), tree=tree)


def _simulate(model, objective, root_out, tree, config, select, select_args, backend):
    B, N = tree.visit_count.shape
    root_latent = root_out.latent
    device = root_latent.device
    # Flattened to [B * N, ...] so that one index_select / index_copy_ moves the latents of all
    # trees; the select kernel writes flat indices b * N + node.
    root_slots = torch.arange(B, device=device) * N
    pool = root_latent.new_empty((B * N,) + tuple(root_latent.shape[1:]))
    pool[root_slots] = root_latent
    # Value-prefix LSTM models carry a per-node state, pooled like the latents (see nets/model.py).
    state_pool = None
    if root_out.reward_state is not None:
        state_pool = root_out.reward_state.new_zeros((B * N,) + tuple(root_out.reward_state.shape[1:]))
        state_pool[root_slots] = root_out.reward_state
    sel = np.zeros((kernels.SEL_ROWS, B), np.int64)
    sel_host = torch.from_numpy(sel[:kernels.SEL_FLAT_SLOT + 1])  # shares memory with `sel`
    select_args = select_args + (sel,)
    prior_mix = config.prior_mix()
    for _ in range(config.num_simulations):
        select(*select_args)
        sel_dev = sel_host.to(device)
        parent_latent = pool.index_select(0, sel_dev[kernels.SEL_FLAT_NODE])
        action = sel_dev[kernels.SEL_MODEL_ACTION]
        if state_pool is None:
            out = model.recurrent_inference(parent_latent, action)
        else:
            out = model.recurrent_inference(parent_latent, action,
                                            state_pool.index_select(0, sel_dev[kernels.SEL_FLAT_NODE]))
            state_pool.index_copy_(0, sel_dev[kernels.SEL_FLAT_SLOT], out.reward_state)
        reward = _checked(objective.edge_reward(model, parent_latent, action, out), "edge_reward",
                          objective, B)
        value = _checked(objective.leaf_value(model, out), "leaf_value", objective, B)
        pool.index_copy_(0, sel_dev[kernels.SEL_FLAT_SLOT], out.latent)
        packed, terminal_column, mask_column = _pack(reward, value, out)
        bad = backend.expand_and_backup(
            sel, packed, terminal_column, mask_column, prior_mix, tree.children, tree.visit_count,
            tree.value_sum, tree.leaf_value, tree.edge_reward, tree.prior, tree.legal, tree.terminal,
            tree.depth, tree.parent, tree.action_from_parent, tree.num_nodes, tree.min_max_q,
            tree.discount)
        if bad >= 0:
            raise ValueError(f"objective {objective.describe()!r} returned a non-finite edge reward "
                             f"({packed[bad, kernels.COL_REWARD]}) or leaf value "
                             f"({packed[bad, kernels.COL_VALUE]}) for tree {bad}")


def _pack(reward, value, out: ModelOutput):
    """One host copy of everything the kernels need from a model step (see kernels.COL_*)."""
    columns = [reward.unsqueeze(1), value.unsqueeze(1), out.policy_logits]
    width = 2 + out.policy_logits.shape[1]
    terminal_column = mask_column = -1
    if out.terminal is not None:
        columns.append(out.terminal.unsqueeze(1).to(out.policy_logits.dtype))
        terminal_column, width = width, width + 1
    if out.action_mask is not None:
        columns.append(out.action_mask.to(out.policy_logits.dtype))
        mask_column = width
    return torch.cat(columns, 1).cpu().numpy(), terminal_column, mask_column


def _checked(x, what: str, objective, batch_size: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != (batch_size,):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"objective {objective.describe()!r}: {what} must return a tensor of shape "
                         f"({batch_size},), got {shape}")
    return x


def _depth_limit(objective, config) -> int:
    # A tree of N nodes can never be deeper than N, so N stands for "unlimited".
    limit = getattr(objective, "max_depth", None)
    return config.num_simulations + 1 if limit is None else int(limit)


def _root_mask(action_mask, batch_size: int, num_actions: int) -> np.ndarray:
    if action_mask is None:
        return np.ones((batch_size, num_actions), np.bool_)
    if isinstance(action_mask, torch.Tensor):
        action_mask = action_mask.detach().cpu().numpy()
    mask = np.asarray(action_mask)
    if mask.shape != (batch_size, num_actions):
        raise ValueError(f"action_mask must have shape ({batch_size}, {num_actions}) (batch, actions), "
                         f"got {mask.shape}")
    return mask.astype(np.bool_)


def _add_dirichlet_noise(tree: Tree, config: SearchConfig, rng: np.random.Generator) -> None:
    """Mix Dirichlet(alpha) noise over the legal root actions into the root prior (MuZero)."""
    legal = tree.legal[:, ROOT]
    # Normalized Gamma(alpha) draws are Dirichlet(alpha); drawn for all B * A at once.
    draws = rng.gamma(config.dirichlet_alpha, size=legal.shape) * legal
    total = draws.sum(axis=1, keepdims=True)
    noise = np.where(total > 0, draws / np.where(total > 0, total, 1.0), 0.0)
    frac = np.where(total > 0, config.root_exploration_fraction, 0.0)
    tree.prior[:, ROOT] = np.where(legal, (1 - frac) * tree.prior[:, ROOT] + frac * noise, 0.0)


def _act(visits, legal, temperature: float, deterministic: bool,
         rng: np.random.Generator) -> np.ndarray:
    """Sample from visits^(1/temperature), or argmax (lowest action on ties) when deterministic."""
    weights = np.where(visits.sum(axis=1, keepdims=True) > 0, visits, legal).astype(np.float64)
    if deterministic or temperature <= 0:
        return weights.argmax(axis=1)
    # Scaled by the row maximum before the power so that small temperatures cannot overflow.
    weights = (weights / weights.max(axis=1, keepdims=True)) ** (1.0 / temperature)
    cdf = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(len(weights))
    return np.minimum((cdf <= u[:, None]).sum(axis=1), weights.shape[1] - 1)

