"""One batched search over B trees, shaped like mctx's `search`: the tree record is passed whole,
and what differs between policies comes in as functions — a root rule and an interior rule.

Per simulation the Python glue is: one select kernel call (the root rule's), one
`model.recurrent_inference` on the whole batch, one `edge_reward` / `leaf_value` pair from the
objective (and `terminal_value` when the model predicts terminal states: `leaf_values`), one copy
of the scalars to the host, one expand-and-backup kernel call. Latents stay on the model's device
in one pool whose slots are the tree's node indices (planners/buffers.py).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from types import ModuleType
from typing import Optional

import numpy as np
import torch

from nets.output import ModelOutput
from planners import buffers, fused, gumbel, kernels
from planners.objectives import Objective
from planners.tree import ROOT, Tree


@dataclass(frozen=True)
class PUCT:
    """MuZero's pUCT rule (c1, c2): the interior rule of every policy, and pUCT's root rule too."""

    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0

    def exploration_table(self, max_visits: int, backend: ModuleType = kernels) -> np.ndarray:
        return _exploration_table(int(max_visits), float(self.pb_c_init), float(self.pb_c_base), backend)


@functools.lru_cache(maxsize=64)
def _exploration_table(max_visits: int, pb_c_init: float, pb_c_base: float, backend: ModuleType) -> np.ndarray:
    """The pUCT exploration table, built once per setting: every search of a run uses the same
    few. Read-only, since searches share it."""
    table = backend.exploration_table(max_visits, pb_c_init, pb_c_base)
    table.flags.writeable = False
    return table


class RootRule:
    """How the action at the root is chosen, simulation by simulation.

    `start` runs once, after the roots are initialized (noise goes into the root prior here);
    `selector` names the kernel that runs once per simulation and writes every tree's selection
    into `sel`, descending below the root by the interior rule. `root_prior` is the root prior
    before `start` changed it.
    """

    root_prior: np.ndarray  # [B, A]

    def start(self, tree: Tree, backend: ModuleType) -> None:
        self.root_prior = tree.prior[:, ROOT].copy()

    def selector(self, tree: Tree, exploration: np.ndarray, sel: np.ndarray, backend: ModuleType):
        """(select kernel, its arguments): the call that selects a leaf in every tree, made once
        per simulation; it writes `sel`."""
        raise NotImplementedError


class PUCTRoot(RootRule):
    """pUCT at the root too, with Dirichlet(alpha) noise mixed into the root prior (noise_fraction
    of it) when `rng` is given."""

    def __init__(self, rng: Optional[np.random.Generator] = None, dirichlet_alpha: float = 0.3,
                 noise_fraction: float = 0.25):
        self.rng, self.alpha, self.fraction = rng, float(dirichlet_alpha), float(noise_fraction)

    def start(self, tree, backend):
        super().start(tree, backend)
        if self.rng is not None:
            # Normalized Gamma(alpha) draws are Dirichlet(alpha): one draw for all B * A.
            args = (tree, self.rng.gamma(self.alpha, size=tree.prior[:, ROOT].shape), self.fraction)
            kernels.specialize(backend.mix_root_noise, *args)(*args)

    def selector(self, tree, exploration, sel, backend):
        args = (tree, exploration, sel)
        return kernels.specialize(backend.select_puct, *args), args


class GumbelRoot(RootRule):
    """Sequential halving over Gumbel-perturbed root actions (planners/gumbel.py); without `rng`
    the Gumbel noise is zero."""

    def __init__(self, num_simulations: int, rng: Optional[np.random.Generator] = None,
                 max_considered: int = 16, c_visit: float = 50.0, c_scale: float = 0.1):
        self.num_simulations, self.rng = int(num_simulations), rng
        self.max_considered, self.c_visit, self.c_scale = int(max_considered), float(c_visit), float(c_scale)
        self.state: Optional[gumbel.GumbelRoot] = None

    def start(self, tree, backend):
        super().start(tree, backend)
        rng = self.rng if self.rng is not None else np.random.default_rng(0)
        self.state = gumbel.draw(tree, rng, self.rng is not None, self.max_considered,
                                 self.num_simulations, self.c_visit, self.c_scale, backend)

    def selector(self, tree, exploration, sel, backend):
        args = (tree, exploration, self.state, sel)
        return kernels.specialize(backend.select_gumbel, *args), args


def search(model, objective: Objective, root, num_simulations: int, *,
           root_rule: RootRule, interior_rule: PUCT = PUCT(), prior_mix: float = 1.0,
           root_prior_mix: Optional[float] = None, action_mask=None, backend: ModuleType = kernels,
           inference: str = "auto") -> Tree:
    """Run `num_simulations` simulations from B roots at once and return the searched trees.

    root: the model's output at the B root observations (`model.initial_inference`), or the
    compiled path's `fused.PackedRoot` of them (searched by the fused loop, without torch).
    root_rule / interior_rule: how actions are selected at the root and below it.
    prior_mix: the learned prior's weight against a uniform one (SearchConfig.prior_mix()), and
    root_prior_mix at the root (SearchConfig.root_prior_mix(); None: prior_mix).
    action_mask: [B, A] bool, legal actions at the root (ANDed with the model's own mask, if any).
    backend: the Numba kernels, or the pure-Python reference the tests compare them with.
    inference: "auto" runs the whole search in one Numba call where it can (planners/fused.py:
    the Learned objective, an MLP model on the CPU, the kernels backend), "torch" always calls
    the model through torch once per simulation.
    """
    with torch.no_grad():
        if isinstance(root, fused.PackedRoot):
            _check_packed_root(model, objective, root, root_rule, backend, inference)
            # A copy: the simulations write their model outputs into these rows, and the root
            # may be searched again.
            packed, terminal_column, mask_column = root.packed.copy(), -1, -1
        else:
            root = objective_view(objective, model, root, root=True)
            packer, terminal_column, mask_column = _pack_root(objective, model, root)
            packed = packer.host
        B, N, A = len(packed), num_simulations + 1, (packed.shape[1] - 3) // 2
        tree = Tree.allocate(B, N, A, objective.discount, _depth_limit(objective, num_simulations))
        args = (tree, packed, terminal_column, mask_column, _root_mask(action_mask, B, A),
                float(prior_mix if root_prior_mix is None else root_prior_mix))
        kernels.specialize(backend.init_roots, *args)(*args)
        has_legal = tree.legal[:, ROOT].any(axis=1)
        if not has_legal.all():
            stuck = ~has_legal & ~tree.terminal[:, ROOT]
            if stuck.any():
                raise ValueError("every root that is not terminal needs at least one legal action (check "
                                 "action_mask and the model's action_mask); rows without one: "
                                 f"{np.flatnonzero(stuck).tolist()}")
        root_rule.start(tree, backend)
        exploration = interior_rule.exploration_table(N, backend)
        if isinstance(root, fused.PackedRoot):
            # A model step fills the terminal column (beside the logits, kernels.COL_*) where the
            # model predicts ends; a root is never terminal, so its rows left it empty.
            _simulate_fused(root.program, objective, root.latent, tree, num_simulations, root_rule, exploration,
                            prior_mix, packed, kernels.COL_LOGITS + A if root.program.has_terminal else -1)
            return tree
        program = _fused_program(model, objective, root, root_rule, backend, inference)
        if program is not None:
            _simulate_fused(program, objective, root.latent.detach().numpy(), tree, num_simulations, root_rule,
                            exploration, prior_mix, packer.host,
                            packer.terminal_column if program.has_terminal else -1)
        else:
            _simulate(model, objective, root, tree, num_simulations, root_rule, exploration, prior_mix,
                      packer, backend)
    return tree


INFERENCE = ("auto", "torch")


def _pack_root(objective, model, root: ModelOutput):
    """The search's OutputPacker with the roots' rows packed (kernels.COL_*), and their terminal
    and mask columns (-1 where the model gave none). The root has no edge reward: zeros stand in."""
    B, A = root.policy_logits.shape
    packer = buffers.OutputPacker(B, A, root.latent.device)
    terminal_column, mask_column = packer.pack(torch.zeros(B, device=root.latent.device),
                                               leaf_values(objective, model, root), root, objective)
    value = packer.host[:, kernels.COL_VALUE]
    if not np.isfinite(value).all():
        bad = int(np.flatnonzero(~np.isfinite(value))[0])
        raise ValueError(f"objective {objective.describe()!r} returned a non-finite leaf value "
                         f"({value[bad]}) at the root of tree {bad}")
    return packer, terminal_column, mask_column


def _fused_program(model, objective, root, root_rule, backend, inference):
    if inference not in INFERENCE:
        raise ValueError(f"inference must be one of {INFERENCE}, got {inference!r}")
    if backend is not kernels or type(root_rule) not in (PUCTRoot, GumbelRoot) or root.reward_state is not None:
        return None
    return fused.fused_program(model, objective, inference)


def _check_packed_root(model, objective, root, root_rule, backend, inference) -> None:
    """A PackedRoot is searched by the fused loop only, with its model's weights as they were when
    it was computed (its Program): refuse what that loop cannot honour."""
    if inference not in INFERENCE:
        raise ValueError(f"inference must be one of {INFERENCE}, got {inference!r}")
    if (backend is not kernels or inference == "torch" or type(objective) is not fused.Learned
            or type(root_rule) not in (PUCTRoot, GumbelRoot)):
        raise ValueError("a fused.PackedRoot is searched only by the compiled loop (the Learned objective, a pUCT "
                         "or Gumbel root rule, the kernels backend, inference='auto'); pass the model's "
                         "ModelOutput for anything else")
    if root.model is not model:
        raise ValueError("this fused.PackedRoot was computed by another model: compute it with this one "
                         "(fused.packed_roots)")


def _simulate_fused(program, objective, latent, tree, num_simulations, root_rule, exploration, prior_mix,
                    packed, terminal_column):
    """The simulation loop in one Numba call (planners/fused.py), on a numpy latent pool.
    latent: the roots' [B, L] float32; packed: the host rows the kernel writes each step into."""
    B, N = tree.visit_count.shape
    pool = np.empty((B * N, latent.shape[1]), np.float32)
    pool[::N] = latent
    sel = np.zeros((kernels.SEL_ROWS, B), np.int64)
    gumbel_state = root_rule.state if isinstance(root_rule, GumbelRoot) else None
    args = (tree, exploration, gumbel_state, sel, packed, pool, program, terminal_column, float(prior_mix),
            int(num_simulations))
    status = kernels.specialize(fused.simulate, *args)(*args)
    if status == fused.MODEL_NOT_FINITE:
        raise FloatingPointError(
            "Model.recurrent_inference: the network produced NaN or inf in its value, reward, policy or terminal "
            "output (training has probably diverged: lower the learning rate or clip gradients)")
    if status >= 0:
        raise ValueError(f"objective {objective.describe()!r} returned a non-finite edge reward "
                         f"({packed[status, kernels.COL_REWARD]}) or leaf value "
                         f"({packed[status, kernels.COL_VALUE]}) for tree {status}")


def _simulate(model, objective, root, tree, num_simulations, root_rule, exploration, prior_mix,
              packer, backend):
    """The simulation loop. Everything that can be is prepared before it: the latent pool, the
    selection array and its device copy, and the packed host buffer with its column views, so that
    a simulation is one select call, one model call, one objective call pair, a few in-place
    copies and one expand-and-backup call."""
    B, N = tree.visit_count.shape
    device = root.latent.device
    pool = buffers.LatentPool(root.latent, B, N)
    # Value-prefix LSTM models carry a per-node state, pooled like the latents (see nets/model.py).
    state_pool = None if root.reward_state is None else buffers.LatentPool(root.reward_state, B, N)
    sel = np.zeros((kernels.SEL_ROWS, B), np.int64)
    sel_host = torch.from_numpy(sel[:kernels.SEL_FLAT_SLOT + 1])  # shares memory with `sel`
    # On the CPU the model reads the selection in place; elsewhere one copy per simulation.
    on_host = buffers.on_host(device)
    sel_dev = sel_host if on_host else torch.empty_like(sel_host, device=device)
    parent_index = sel_dev[kernels.SEL_FLAT_NODE]
    # The action tensor the model and objective get is a view that the next simulation rewrites.
    action = sel_dev[kernels.SEL_MODEL_ACTION]
    slot_index = sel_dev[kernels.SEL_FLAT_SLOT]
    parent_rows, slot_rows = sel[kernels.SEL_FLAT_NODE], sel[kernels.SEL_FLAT_SLOT]
    # A value-prefix LSTM's state is reset every `horizon` transitions, as in the learner's unroll.
    horizon = getattr(model, "value_prefix_horizon", None) if state_pool is not None else None
    trees = np.arange(B)
    packed = packer.host
    select, select_args = root_rule.selector(tree, exploration, sel, backend)
    expand_and_backup = kernels.specialize(backend.expand_and_backup, tree, sel, packed, -1, -1, prior_mix)
    recurrent_inference = model.recurrent_inference
    edge_reward = objective.edge_reward
    for _ in range(num_simulations):
        select(*select_args)
        if not on_host:
            sel_dev.copy_(sel_host)
        parent_latent = pool.gather(parent_index, parent_rows)
        if state_pool is None:
            out = recurrent_inference(parent_latent, action)
        else:
            state = state_pool.gather(parent_index, parent_rows)
            if horizon is not None:
                reset = tree.depth[trees, sel[kernels.SEL_NODE]] % horizon == 0
                if reset.any():
                    state[torch.as_tensor(reset, device=state.device)] = 0.0
            out = recurrent_inference(parent_latent, action, state)
            state_pool.scatter(slot_index, slot_rows, out.reward_state)
        pool.scatter(slot_index, slot_rows, out.latent)
        out = objective_view(objective, model, out)
        reward = edge_reward(model, parent_latent, action, out)
        value = leaf_values(objective, model, out)
        terminal_column, mask_column = packer.pack(reward, value, out, objective)
        bad = expand_and_backup(tree, sel, packed, terminal_column, mask_column, prior_mix)
        if bad >= 0:
            raise ValueError(f"objective {objective.describe()!r} returned a non-finite edge reward "
                             f"({packed[bad, kernels.COL_REWARD]}) or leaf value "
                             f"({packed[bad, kernels.COL_VALUE]}) for tree {bad}")


def objective_view(objective: Objective, model, out: ModelOutput, root: bool = False) -> ModelOutput:
    """`out` as the objective sees it: the states it ends the episode in (Objective.ends) marked
    terminal beside the model's predicted terminals (both absorbing; never at a root, a real
    state the environment has not ended), and its own policy prior where it has one."""
    B = out.latent.shape[0]
    changes = {}
    ends = None if root else objective.ends(model, out)
    if ends is not None:
        buffers.check_scalars(ends, "ends", objective, B)
        ends = ends.to(torch.bool)
        changes["terminal"] = ends if out.terminal is None else (out.terminal.to(torch.bool) | ends)
    logits = objective.policy_logits(model, out) if objective.has_prior else None
    if logits is not None:
        if not isinstance(logits, torch.Tensor) or logits.shape != out.policy_logits.shape:
            raise ValueError(f"objective {objective.describe()!r}: policy_logits must return a tensor of shape "
                             f"{tuple(out.policy_logits.shape)}")
        changes["policy_logits"] = logits
    return dataclasses.replace(out, **changes) if changes else out


def leaf_values(objective: Objective, model, out: ModelOutput) -> torch.Tensor:
    """What a new node is worth to the search, [B]: the objective's leaf value, or its terminal
    value in the rows the model predicts terminal (an absorbing state: the kernels never expand
    it, so this value is all that is ever backed up from it)."""
    value = objective.leaf_value(model, out)
    if out.terminal is None:
        return value
    terminal = objective.terminal_value(model, out)
    B = out.policy_logits.shape[0]
    buffers.check_scalars(value, "leaf_value", objective, B)
    buffers.check_scalars(terminal, "terminal_value", objective, B)
    return torch.where(out.terminal.to(torch.bool), terminal, value)


def _depth_limit(objective, num_simulations: int) -> int:
    # A tree of N nodes can never be deeper than N, so N stands for "unlimited".
    limit = getattr(objective, "max_depth", None)
    return num_simulations + 1 if limit is None else int(limit)


def _root_mask(action_mask, batch_size: int, num_actions: int) -> np.ndarray:
    if action_mask is None:
        return np.ones((batch_size, num_actions), np.bool_)
    if isinstance(action_mask, torch.Tensor):
        action_mask = action_mask.detach().cpu().numpy()
    mask = np.asarray(action_mask)
    if mask.shape != (batch_size, num_actions):
        raise ValueError(f"action_mask must have shape ({batch_size}, {num_actions}) (batch, actions), "
                         f"got {mask.shape}")
    # C order: the kernels are resolved once per dtype (kernels.specialize), so every root mask
    # must reach them in the layout the first one did.
    return np.ascontiguousarray(mask, np.bool_)
