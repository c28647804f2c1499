"""The Numba kernels against the pure-Python reference (planners/reference.py): same trees."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nets.output import ModelOutput
from planners import kernels, reference
from planners.config import SearchConfig
from planners.objectives import Learned, Objective, RewardOnly
from planners.policies import plan
from planners.tree import Tree

BACKENDS = [pytest.param(kernels, id="numba"), pytest.param(reference, id="python")]


class RandomTableModel:
    """A random deterministic model over S states: latent = one-hot state; random next states,
    rewards, values, logits (some -inf), action masks and terminal flags, and with the flags a
    table of terminal values (which `TerminalTable` hands the search)."""

    def __init__(self, rng: np.random.Generator, num_states: int, num_actions: int, dtype,
                 masks: bool, terminals: bool):
        S, A = num_states, num_actions
        self.S, self.dtype = S, dtype
        self.next_state = torch.as_tensor(rng.integers(0, S, (S, A)))
        self.reward = torch.as_tensor(rng.normal(size=(S, A)), dtype=dtype)
        self.value = torch.as_tensor(rng.normal(size=S) * 2, dtype=dtype)
        logits = rng.normal(size=(S, A)) * 2
        logits[rng.random((S, A)) < 0.1] = -np.inf
        self.logits = torch.as_tensor(logits, dtype=dtype)
        self.mask = torch.as_tensor(rng.random((S, A)) < 0.8) if masks else None
        self.terminal = torch.as_tensor(rng.random(S) < 0.15) if terminals else None
        self.terminal_value = torch.as_tensor(rng.normal(size=S) * 2 + 3, dtype=dtype)

    def _out(self, state, reward):
        return ModelOutput(
            latent=torch.nn.functional.one_hot(state, self.S).to(self.dtype), reward=reward,
            value=self.value[state], policy_logits=self.logits[state],
            terminal=None if self.terminal is None else self.terminal[state],
            action_mask=None if self.mask is None else self.mask[state])

    def initial_inference(self, obs):
        state = torch.as_tensor(obs)
        return self._out(state, torch.zeros(len(state), dtype=self.dtype))

    def recurrent_inference(self, latent, action):
        state = latent.argmax(1)
        action = action.long()
        return self._out(self.next_state[state, action], self.reward[state, action])


class TerminalTable(Objective):
    """`base` whose terminal value is the model's table (nonzero at absorbing states)."""

    def __init__(self, base):
        self.base, self.discount, self.max_depth = base, base.discount, base.max_depth

    def edge_reward(self, model, parent_latent, action, out):
        return self.base.edge_reward(model, parent_latent, action, out)

    def leaf_value(self, model, out):
        return self.base.leaf_value(model, out)

    def terminal_value(self, model, out):
        return model.terminal_value[out.latent.argmax(1)]

    def describe(self):
        return f"TerminalTable({self.base.describe()})"

    def to_spec(self):
        return {"name": "terminal-table"}


@st.composite
def search_cases(draw):
    return dict(
        seed=draw(st.integers(0, 2**31 - 1)),
        B=draw(st.integers(1, 4)),
        A=draw(st.integers(2, 5)),
        S=draw(st.integers(1, 12)),
        sims=draw(st.integers(1, 30)),
        discount=draw(st.floats(0.5, 1.0)),
        horizon=draw(st.one_of(st.none(), st.integers(1, 4))),
        masks=draw(st.booleans()),
        terminals=draw(st.booleans()),
        terminal_values=draw(st.booleans()),
        root_mask=draw(st.booleans()),
        noise=draw(st.booleans()),
        prior=draw(st.sampled_from(["learned", "uniform", "mixed(0.3)", "root-uniform"])),
        algorithm=draw(st.sampled_from(["puct", "gumbel"])),
        policy_target=draw(st.sampled_from(["auto", "visits", "improved"])),
        float64=draw(st.booleans()),
    )


def _run(case, backend):
    rng = np.random.default_rng(case["seed"])
    B, A = case["B"], case["A"]
    model = RandomTableModel(rng, case["S"], A, torch.float64 if case["float64"] else torch.float32,
                             case["masks"], case["terminals"])
    obs = rng.integers(0, case["S"], B)
    root_mask = None
    if case["root_mask"]:
        root_mask = rng.random((B, A)) < 0.6
        root_mask[np.arange(B), rng.integers(0, A, B)] = True
    if model.mask is not None:  # every root keeps a legal action
        for b in range(B):
            keep = 0 if root_mask is None else int(np.flatnonzero(root_mask[b])[0])
            model.mask[int(obs[b]), keep] = True
    objective = (Learned(case["discount"]) if case["horizon"] is None
                 else RewardOnly(case["horizon"], case["discount"]))
    if case["terminal_values"]:
        objective = TerminalTable(objective)
    config = SearchConfig(num_simulations=case["sims"], prior=case["prior"], algorithm=case["algorithm"],
                          gumbel_max_considered=3, policy_target=case["policy_target"])
    return plan(model, objective, obs, config, rng=np.random.default_rng(case["seed"] + 1),
                      add_noise=case["noise"], action_mask=root_mask, temperature=1.0,
                      deterministic=False, backend=backend)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(search_cases())
def test_numba_kernels_build_the_same_trees_as_the_python_reference(case):
    fast, slow = _run(case, kernels), _run(case, reference)
    t, r = fast.tree, slow.tree
    for name in ("visit_count", "children", "parent", "action_from_parent", "depth", "terminal",
                 "legal", "num_nodes"):
        np.testing.assert_array_equal(getattr(t, name), getattr(r, name), err_msg=name)
    for name in ("value_sum", "leaf_value", "edge_reward", "prior", "min_max_q"):
        np.testing.assert_allclose(getattr(t, name), getattr(r, name), rtol=1e-12, atol=1e-12,
                                   err_msg=name)
    # Absorbing nodes store the objective's terminal value (0 for Learned and RewardOnly).
    in_use = np.arange(t.terminal.shape[1]) < t.num_nodes[:, None]
    stored = t.leaf_value[t.terminal & in_use]
    assert (stored != 0).all() if case["terminal_values"] else (stored == 0).all()
    np.testing.assert_array_equal(fast.visit_counts, slow.visit_counts)
    np.testing.assert_array_equal(fast.action, slow.action)
    np.testing.assert_allclose(fast.root_value, slow.root_value, rtol=1e-12)
    for name in ("q_values", "edge_reward", "child_value", "action_weights"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=1e-12,
                                   err_msg=name)
    # Every simulation adds one visit to the root (which starts with one of its own).
    np.testing.assert_array_equal(t.visit_count[:, 0], case["sims"] + 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unvisited_child_scores_the_parents_mean_value(backend):
    """Root with 2 visits and mean value 0.8; action 0 visited once with Q = 0.2, action 1 never.
    With the min-max range [0.2, 0.8]: normalized Q(a0) = 0, and the unvisited a1 scores the
    parent's mean, normalized to 1. exploration = (log((2 + c2 + 1) / c2) + c1) * sqrt(2) = 1.7679:
    a0 = 1.7679 * 0.9 / 2 + 0 = 0.796, a1 = 1.7679 * 0.1 / 1 + 1 = 1.177, so a1 is selected (with
    MuZero's 0 for an unvisited child a1 would score 0.177 and lose)."""
    tree = Tree.allocate(1, 4, 2, discount=1.0, max_depth=10)
    tree.visit_count[0, :2] = [2, 1]
    tree.value_sum[0, :2] = [1.6, 0.2]
    tree.children[0, 0] = [1, -1]
    tree.parent[0, 1] = 0
    tree.depth[0, 1] = 1
    tree.num_nodes[0] = 2
    tree.legal[0, 0] = True  # node 1 has no legal action
    tree.prior[0, 0] = [0.9, 0.1]
    tree.min_max_q[0] = [0.2, 0.8]
    sel = np.zeros((kernels.SEL_ROWS, 1), np.int64)
    args = (tree, backend.exploration_table(3, 1.25, 19652.0), sel)
    backend.select_puct(*args)
    assert (sel[kernels.SEL_NODE, 0], sel[kernels.SEL_ACTION, 0]) == (0, 1)
    assert sel[kernels.SEL_FLAT_SLOT, 0] == 2  # the next free node
    assert sel[kernels.SEL_FLAT_NODE, 0] == 0 and sel[kernels.SEL_MODEL_ACTION, 0] == 1
    # Lower the parent's mean to 0.3 (normalized 1/6): now a0 wins (0.796 > 0.177 + 0.167).
    tree.value_sum[0, 0] = 0.6
    # a0 is expanded, so the descent goes on into node 1, which has no legal action: node 1 is
    # selected with action -1 (back its value up again, no model call).
    backend.select_puct(*args)
    assert sel[kernels.SEL_NODE, 0] == 1 and sel[kernels.SEL_ACTION, 0] == -1
    assert (math.log((2 + 19652.0 + 1) / 19652.0) + 1.25) * math.sqrt(2) == pytest.approx(1.7679,
                                                                                          abs=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backup_adds_discounted_edge_rewards(backend):
    """Path root -a0-> n1 -a1-> new leaf: rewards 1 then 2, leaf value 4, discount 0.5.
    Returns: leaf 4; n1: 2 + 0.5 * 4 = 4; root: 1 + 0.5 * 4 = 3."""
    tree = Tree.allocate(1, 4, 2, discount=0.5, max_depth=10)
    tree.visit_count[0, :2] = [1, 1]
    tree.children[0, 0, 0] = 1
    tree.parent[0, 1] = 0
    tree.depth[0, 1] = 1
    tree.edge_reward[0, 1] = 1.0
    tree.num_nodes[0] = 2
    sel = np.array([[1], [1], [2], [1], [1]], np.int64)
    packed = np.array([[2.0, 4.0, 0.0, 0.0]])
    bad = backend.expand_and_backup(tree, sel, packed, -1, -1, 1.0)
    assert bad == -1
    assert tree.children[0, 1, 1] == 2 and tree.parent[0, 2] == 1 and tree.depth[0, 2] == 2
    np.testing.assert_allclose(tree.value_sum[0, :3], [3.0, 4.0, 4.0])
    np.testing.assert_array_equal(tree.visit_count[0, :3], [2, 2, 1])
    np.testing.assert_allclose(tree.prior[0, 2], [0.5, 0.5])
    # Q of n2 = 2 + 0.5 * 4 = 4; Q of n1 = 1 + 0.5 * 4 / 2 = 2.
    np.testing.assert_allclose(tree.min_max_q[0], [2.0, 4.0])
    # A non-finite leaf value is reported and changes nothing.
    packed[0, 1] = np.nan
    before = tree.value_sum.copy()
    sel[kernels.SEL_FLAT_SLOT, 0], sel[kernels.SEL_NODE, 0], sel[kernels.SEL_ACTION, 0] = 3, 2, 0
    assert backend.expand_and_backup(tree, sel, packed, -1, -1, 1.0) == 0
    np.testing.assert_array_equal(tree.value_sum, before)
    assert tree.num_nodes[0] == 3
