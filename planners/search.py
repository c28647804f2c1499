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
        packer = _Packer(B, A, root_out.latent.device)
        # The root has no edge reward: zeros stand in for it.
        terminal_column, mask_column = packer.pack(torch.zeros(B, device=root_out.latent.device),
                                                   objective.leaf_value(model, root_out), root_out,
                                                   objective)
        packed = packer.host
        if not np.isfinite(packed[:, kernels.COL_VALUE]).all():
            bad = int(np.flatnonzero(~np.isfinite(packed[:, kernels.COL_VALUE]))[0])
            raise ValueError(f"objective {objective.describe()!r} returned a non-finite leaf value "
                             f"({packed[bad, kernels.COL_VALUE]}) at the root of tree {bad}")
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
                # Normalized Gamma(alpha) draws are Dirichlet(alpha): one draw for all B * A.
                backend.mix_root_noise(tree.prior, tree.legal,
                                       rng.gamma(config.dirichlet_alpha, size=(B, A)),
                                       float(config.root_exploration_fraction))
            select = backend.select_puct
            select_args = (tree.children, tree.visit_count, tree.value_sum, tree.edge_reward,
                           tree.prior, tree.legal, tree.terminal, tree.depth, tree.num_nodes,
                           tree.min_max_q, tree.discount, tree.max_depth,
                           backend.exploration_table(tree.visit_count.shape[1], config.pb_c_init,
                                                     config.pb_c_base))
        _simulate(model, objective, root_out, tree, config, select, select_args, backend,
                  packer)

    visits = np.empty((B, A), np.int64)
    edge_reward, child_value, q_values = (np.empty((B, A)) for _ in range(3))
    backend.root_child_stats(tree.children, tree.visit_count, tree.value_sum, tree.edge_reward,
                             tree.discount, ROOT, visits, edge_reward, child_value, q_values)
    if config.algorithm == "gumbel":
        action, policy_target = root_gumbel.decide(tree, config)
    else:
        total = visits.sum(axis=1, keepdims=True)
        policy_target = np.where(total > 0, visits / np.maximum(total, 1), root_prior)
        action = _act(visits, tree.legal[:, ROOT], temperature, deterministic, rng, backend)
    return SearchResult(visit_counts=visits, q_values=q_values, root_value=tree.node_value(ROOT),
                        action=action, policy_target=policy_target, prior=root_prior,
                        edge_reward=edge_reward, child_value=child_value,
                        max_depth=tree.deepest(), tree=tree)


def _simulate(model, objective, root_out, tree, config, select, select_args, backend, packer):
    """The simulation loop. Everything that can be is prepared before it: the latent pool, the
    selection array and its device copy, and the packed host buffer with its column views, so that
    a simulation is one select call, one model call, one objective call pair, a few in-place
    copies and one expand-and-backup call."""
    B, N = tree.visit_count.shape
    root_latent = root_out.latent
    device = root_latent.device
    pool = _Pool(root_latent, B, N)
    # Value-prefix LSTM models carry a per-node state, pooled like the latents (see nets/model.py).
    state_pool = None if root_out.reward_state is None else _Pool(root_out.reward_state, B, N)
    sel = np.zeros((kernels.SEL_ROWS, B), np.int64)
    sel_host = torch.from_numpy(sel[:kernels.SEL_FLAT_SLOT + 1])  # shares memory with `sel`
    # On the CPU the model reads the selection in place; elsewhere one copy per simulation.
    on_host = _on_host(device)
    sel_dev = sel_host if on_host else torch.empty_like(sel_host, device=device)
    parent_index = sel_dev[kernels.SEL_FLAT_NODE]
    # The action tensor the model and objective get is a view that the next simulation rewrites.
    action = sel_dev[kernels.SEL_MODEL_ACTION]
    slot_index = sel_dev[kernels.SEL_FLAT_SLOT]
    parent_rows, slot_rows = sel[kernels.SEL_FLAT_NODE], sel[kernels.SEL_FLAT_SLOT]
    select_args = select_args + (sel,)
    prior_mix = config.prior_mix()
    packed = packer.host
    tree_args = (prior_mix, tree.children, tree.visit_count, tree.value_sum, tree.leaf_value,
                 tree.edge_reward, tree.prior, tree.legal, tree.terminal, tree.depth, tree.parent,
                 tree.action_from_parent, tree.num_nodes, tree.min_max_q, tree.discount)
    expand_and_backup = backend.expand_and_backup
    recurrent_inference = model.recurrent_inference
    edge_reward, leaf_value = objective.edge_reward, objective.leaf_value
    for _ in range(config.num_simulations):
        select(*select_args)
        if not on_host:
            sel_dev.copy_(sel_host)
        parent_latent = pool.gather(parent_index, parent_rows)
        if state_pool is None:
            out = recurrent_inference(parent_latent, action)
        else:
            out = recurrent_inference(parent_latent, action,
                                      state_pool.gather(parent_index, parent_rows))
            state_pool.scatter(slot_index, slot_rows, out.reward_state)
        pool.scatter(slot_index, slot_rows, out.latent)
        reward = edge_reward(model, parent_latent, action, out)
        value = leaf_value(model, out)
        terminal_column, mask_column = packer.pack(reward, value, out, objective)
        bad = expand_and_backup(sel, packed, terminal_column, mask_column, *tree_args)
        if bad >= 0:
            raise ValueError(f"objective {objective.describe()!r} returned a non-finite edge reward "
                             f"({packed[bad, kernels.COL_REWARD]}) or leaf value "
                             f"({packed[bad, kernels.COL_VALUE]}) for tree {bad}")


def _on_host(device: torch.device) -> bool:
    """Whether tensors on `device` share memory with numpy arrays (the CPU): then the selection,
    the latent pool and the packed buffer are used in place, with no copies (tests turn this off
    to run the device path on the CPU)."""
    return device.type == "cpu"


class _Pool:
    """Per-node tensors of B trees (latents, reward states) on the model's device, flattened to
    [B * N, ...] so that one gather / scatter moves the rows of all trees; row b * N + node holds
    node `node` of tree b (the select kernel writes these flat indices). On the CPU the rows move
    through a numpy view of the same memory, which is several times faster than index_select /
    index_copy_ for small rows."""

    def __init__(self, root: torch.Tensor, batch_size: int, num_nodes: int):
        shape = tuple(root.shape[1:])
        # Uninitialized: a slot is written (its node created) before it is ever read, and not
        # zeroing B * N rows saves a pass over the whole pool per search.
        self.pool = root.new_empty((batch_size * num_nodes,) + shape)
        self.pool.view((batch_size, num_nodes) + shape)[:, 0] = root
        self.array = self.pool.numpy() if _on_host(root.device) else None

    def gather(self, index: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        if self.array is None:
            return self.pool.index_select(0, index)
        return torch.from_numpy(self.array.take(rows, axis=0))

    def scatter(self, index: torch.Tensor, rows: np.ndarray, values: torch.Tensor) -> None:
        if self.array is None:
            self.pool.index_copy_(0, index, values)
        else:
            self.array[rows] = values.numpy()


class _Packer:
    """One preallocated host buffer [B, 3 + 2A] (float64) of everything the kernels need from a
    model step: edge reward, leaf value, policy logits, terminal flag, action mask (kernels.COL_*).
    `pack` fills it in place from the model's device (one copy to the host per step off the CPU)
    and returns the terminal and mask columns (-1 where the model gave none)."""

    def __init__(self, batch_size: int, num_actions: int, device: torch.device):
        A = num_actions
        self.batch_size = batch_size
        self.host = np.zeros((batch_size, 3 + 2 * A), np.float64)
        host = torch.from_numpy(self.host)
        self.on_host = _on_host(device)
        self.dev = host if self.on_host else torch.zeros(host.shape, dtype=host.dtype, device=device)
        self.host_tensor = host
        self.reward = self.dev[:, kernels.COL_REWARD]
        self.value = self.dev[:, kernels.COL_VALUE]
        self.logits = self.dev[:, kernels.COL_LOGITS:kernels.COL_LOGITS + A]
        self.terminal_column = kernels.COL_LOGITS + A
        self.mask_column = self.terminal_column + 1
        self.terminal = self.dev[:, self.terminal_column]
        self.mask = self.dev[:, self.mask_column:]

    def pack(self, reward, value, out: ModelOutput, objective):
        B = self.batch_size
        if type(reward) is not torch.Tensor or reward.shape != (B,):
            _shape_error(reward, "edge_reward", objective, B)
        if type(value) is not torch.Tensor or value.shape != (B,):
            _shape_error(value, "leaf_value", objective, B)
        self.reward.copy_(reward)
        self.value.copy_(value)
        self.logits.copy_(out.policy_logits)
        terminal_column = mask_column = -1
        if out.terminal is not None:
            self.terminal.copy_(out.terminal)
            terminal_column = self.terminal_column
        if out.action_mask is not None:
            self.mask.copy_(out.action_mask)
            mask_column = self.mask_column
        if not self.on_host:
            self.host_tensor.copy_(self.dev)
        return terminal_column, mask_column


def _shape_error(x, what: str, objective, batch_size: int):
    shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
    raise ValueError(f"objective {objective.describe()!r}: {what} must return a tensor of shape "
                     f"({batch_size},), got {shape}")


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


def _act(visits, legal, temperature: float, deterministic: bool, rng: np.random.Generator,
         backend: ModuleType = kernels) -> np.ndarray:
    """Sample from visits^(1/temperature), or argmax (lowest action on ties) when deterministic
    (or temperature <= 0). Rows without visits weigh their legal actions alike."""
    greedy = bool(deterministic or temperature <= 0)
    u = np.zeros(len(visits)) if greedy else rng.random(len(visits))
    out = np.empty(len(visits), np.int64)
    backend.choose_actions(np.ascontiguousarray(visits, np.int64), np.ascontiguousarray(legal, np.bool_),
                           float(temperature) if not greedy else 1.0, greedy, u, out)
    return out
