"""The search driver: root noise, action choice, objective checks, the latent and state pools."""
import numpy as np
import pytest
import torch

from nets.output import ModelOutput
from planners.config import SearchConfig
from planners.objectives import Learned, Objective, RewardOnly
from planners.policies import choose_action, plan
from planners.tree import ROOT
from tests.exact_models import ALL, ExactModel, batch_of, two_step


def _run(model, obs, objective=None, sims=20, seed=0, **kw):
    config = SearchConfig(num_simulations=sims, **kw.pop("config", {}))
    return plan(model, objective or Learned(0.97), obs, config, rng=np.random.default_rng(seed),
                  **kw)


def test_dirichlet_noise_is_determined_by_the_rng():
    model, obs, _ = batch_of(ALL, 6, seed=1)
    a = _run(model, obs, seed=7, add_noise=True)
    b = _run(model, obs, seed=7, add_noise=True)
    c = _run(model, obs, seed=8, add_noise=True)
    quiet = _run(model, obs, seed=7, add_noise=False)
    np.testing.assert_array_equal(a.tree.prior, b.tree.prior)
    np.testing.assert_array_equal(a.visit_counts, b.visit_counts)
    np.testing.assert_array_equal(a.action, b.action)
    assert not np.allclose(a.tree.prior[:, ROOT], c.tree.prior[:, ROOT])
    # The noise touches only the root prior, only legal actions, and keeps it a distribution.
    noisy_root = a.tree.prior[:, ROOT]
    legal = model.legal[obs].numpy()
    assert (noisy_root[~legal] == 0).all()
    np.testing.assert_allclose(noisy_root.sum(axis=1), 1.0)
    assert not np.allclose(noisy_root, quiet.tree.prior[:, ROOT])
    # SearchResult.prior is the prior before noise: uniform over the legal actions here.
    np.testing.assert_allclose(a.prior, legal / legal.sum(axis=1, keepdims=True))
    # With fraction 0 the noise changes nothing.
    d = _run(model, obs, seed=7, add_noise=True, config={"root_exploration_fraction": 0.0})
    np.testing.assert_allclose(d.tree.prior, quiet.tree.prior)


def test_act_temperature_sampling_follows_visits():
    visits = np.tile(np.array([[10, 30, 0, 60]]), (20000, 1))
    legal = np.ones_like(visits, bool)
    rng = np.random.default_rng(0)
    freq = np.bincount(choose_action(visits, legal, 1.0, False, rng), minlength=4) / len(visits)
    np.testing.assert_allclose(freq, [0.1, 0.3, 0.0, 0.6], atol=0.015)
    # temperature 0.5: visits^2 -> [100, 900, 0, 3600] / 4600
    freq = np.bincount(choose_action(visits, legal, 0.5, False, rng), minlength=4) / len(visits)
    np.testing.assert_allclose(freq, np.array([100, 900, 0, 3600]) / 4600, atol=0.015)
    # Tiny temperatures do not overflow and act greedily; deterministic is the argmax.
    assert (choose_action(visits, legal, 1e-4, False, rng) == 3).all()
    assert (choose_action(visits, legal, 1.0, True, rng) == 3).all()
    # Ties under deterministic go to the higher root Q, then the lowest action; no visits at all:
    # a legal action. The Numba kernel and the Python reference agree.
    from planners import kernels, reference
    tie = np.array([[0, 5, 5], [0, 5, 5], [4, 4, 0], [0, 5, 5]])
    q = np.array([[np.nan, 0.1, 0.3], [np.nan, 0.3, 0.3], [-3.6, -1.5, np.nan], [np.nan, 0.3, 0.1]])
    for backend in (kernels, reference):
        assert choose_action(tie, np.ones((4, 3), bool), 1.0, True, rng, backend, q=q).tolist() == [2, 1, 1, 1]
        assert choose_action(tie, np.ones((4, 3), bool), 1.0, True, rng, backend).tolist() == [1, 1, 0, 1]
    none = np.zeros((500, 3), int)
    only_two = np.tile([[False, False, True]], (500, 1))
    assert (choose_action(none, only_two, 1.0, False, rng) == 2).all()


def test_search_samples_with_temperature_and_is_greedy_when_deterministic():
    model = ExactModel([two_step()] * 200)
    obs = model.root_obs(range(200))
    result = _run(model, obs, sims=30, temperature=1.0, add_noise=False)
    visits = result.visit_counts[0]
    # Identical trees (no noise): the actions sampled across rows follow the shared visit counts.
    assert (result.visit_counts == visits).all()
    freq = np.bincount(result.action, minlength=4) / 200
    np.testing.assert_allclose(freq, visits / visits.sum(), atol=0.12)
    assert len(set(result.action.tolist())) > 1
    greedy = _run(model, obs, sims=30, deterministic=True, add_noise=False)
    assert (greedy.action == visits.argmax()).all()
    np.testing.assert_allclose(result.action_weights[0], visits / visits.sum())


class _Broken(Objective):
    def __init__(self, edge=None, leaf=None, when=0, terminal=None):
        self.edge, self.leaf, self.when, self.calls, self.terminal = edge, leaf, when, 0, terminal

    def edge_reward(self, model, parent_latent, action, out):
        return self.edge(out) if self.edge else out.reward

    def leaf_value(self, model, out):
        self.calls += 1
        return self.leaf(out) if self.leaf and self.calls > self.when else out.value

    def terminal_value(self, model, out):
        return self.terminal(out) if self.terminal else super().terminal_value(model, out)

    def describe(self):
        return "Broken"

    def to_spec(self):
        return {"name": "broken"}


@pytest.mark.parametrize("objective,match", [
    (_Broken(edge=lambda out: out.reward[:, None]), r"edge_reward must return a tensor of shape \(3,\), got \(3, 1\)"),
    (_Broken(leaf=lambda out: out.value[:2]), r"leaf_value must return a tensor of shape \(3,\), got \(2,\)"),
    (_Broken(leaf=lambda out: out.value.tolist()), r"leaf_value must return a tensor of shape \(3,\), got list"),
    (_Broken(leaf=lambda out: out.value * np.nan), r"non-finite leaf value \(nan\) at the root of tree 0"),
    (_Broken(edge=lambda out: out.reward + torch.tensor([0, np.inf, 0])),
     r"'Broken' returned a non-finite edge reward \(inf\) or leaf value \(0.0\) for tree 1"),
    (_Broken(leaf=lambda out: torch.where(out.value == 0, np.nan, 0.0), when=1),
     r"'Broken' returned a non-finite edge reward \(0.0\) or leaf value \(nan\) for tree 0"),
    # The exact models predict terminal states: their rows take the terminal value, checked alike.
    (_Broken(terminal=lambda out: out.value[:1]), r"terminal_value must return a tensor of shape \(3,\), got \(1,\)"),
    (_Broken(terminal=lambda out: torch.full_like(out.value, np.nan)),
     r"'Broken' returned a non-finite edge reward \(.*\) or leaf value \(nan\) for tree \d"),
])
def test_objective_with_wrong_shape_or_nan_raises_a_clear_error(objective, match):
    model, obs, _ = batch_of(ALL, 3)
    with pytest.raises(ValueError, match=match):
        _run(model, obs, objective)


def test_rng_must_be_a_generator():
    model, obs, _ = batch_of(ALL, 2)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        plan(model, Learned(), obs, SearchConfig(num_simulations=2), rng=0)


def test_root_may_be_a_model_output_and_prior_setting_flattens_it():
    mdp = two_step()
    mdp.logits = np.zeros((4, 4))
    mdp.logits[:, mdp.label("early")] = 3.0  # a prior that pulls toward the greedy action
    model = ExactModel([mdp])
    root = model.initial_inference(model.root_obs([0]))
    learned = _run(model, root, sims=5, add_noise=False)
    uniform = _run(model, root, sims=5, add_noise=False, config={"prior": "uniform"})
    mixed = _run(model, root, sims=5, add_noise=False, config={"prior": "mixed(0.5)"})
    legal = model.legal[0].numpy()
    soft = np.where(legal, np.exp(mdp.logits[0]), 0)
    soft /= soft.sum()
    np.testing.assert_allclose(learned.prior[0], soft)
    np.testing.assert_allclose(uniform.prior[0], legal / legal.sum())
    np.testing.assert_allclose(mixed.prior[0], 0.5 * soft + 0.5 * legal / legal.sum())
    # The prior also shapes every node below the root.
    n = uniform.tree.num_nodes[0]
    in_use = uniform.tree.prior[0, 1:n][~uniform.tree.terminal[0, 1:n]]
    assert np.allclose(in_use[in_use > 0], 1 / 3)
    # 'root-uniform' flattens the root only: below it the learned prior steers.
    root_flat = _run(model, root, sims=5, add_noise=False, config={"prior": "root-uniform"})
    np.testing.assert_allclose(root_flat.prior[0], legal / legal.sum())
    n = root_flat.tree.num_nodes[0]
    in_use = root_flat.tree.prior[0, 1:n][~root_flat.tree.terminal[0, 1:n]]
    assert not np.allclose(in_use[in_use > 0], 1 / 3)


def test_a_prior_setting_that_cannot_be_read_is_refused_naming_the_forms():
    with pytest.raises(ValueError, match="root-uniform"):
        SearchConfig(prior="root-flat")
    assert SearchConfig(prior="root-mixed(0.25)").root_prior_mix() == 0.25
    assert SearchConfig(prior="root-mixed(0.25)").prior_mix() == 1.0


def test_reward_only_depth_limit_bounds_the_tree():
    model, obs, _ = batch_of(ALL, 6)
    for horizon in (1, 2):
        result = _run(model, obs, RewardOnly(horizon, 0.9), sims=40)
        assert result.max_depth.max() == horizon
        # Leaves at the horizon are worth 0: the root's Q is a sum of at most `horizon` rewards.
        n = result.tree.num_nodes
        assert all((result.tree.leaf_value[b, :n[b]] == 0).all() for b in range(6))


class _PrefixModel:
    """A model with a value-prefix-style `reward_state` (nets/model.py): the state counts the
    steps from the root, and the reward of a step is the state it was given, so a search that
    passed the wrong node's state would store the wrong edge rewards."""

    def initial_inference(self, obs):
        B = len(obs)
        return ModelOutput(latent=torch.zeros(B, 2), reward=torch.zeros(B), value=torch.zeros(B),
                           policy_logits=torch.zeros(B, 2), reward_state=torch.zeros(B, 1))

    def recurrent_inference(self, latent, action, reward_state=None):
        assert reward_state is not None, "the search must pass reward_state to a model that makes it"
        B = latent.shape[0]
        return ModelOutput(latent=latent + 1, reward=reward_state[:, 0].clone(),
                           value=torch.zeros(B), policy_logits=torch.zeros(B, 2),
                           reward_state=reward_state + 1)


def test_reward_state_travels_with_each_node():
    result = _run(_PrefixModel(), np.zeros(3), sims=25, add_noise=False)
    tree = result.tree
    for b in range(3):
        n = tree.num_nodes[b]
        assert tree.depth[b, :n].max() >= 3
        # edge reward into a node = its parent's step count = depth - 1
        np.testing.assert_array_equal(tree.edge_reward[b, 1:n], tree.depth[b, 1:n] - 1)


class _HorizonModel(_PrefixModel):
    value_prefix_horizon = 3  # a value-prefix LSTM trained on unrolls of 3 transitions


def test_reward_state_is_reset_every_value_prefix_horizon():
    """The state counts transitions since its last reset and the edge reward is that count at the
    parent: with a reset every 3 transitions, the reward into a node at depth d is (d - 1) % 3."""
    result = _run(_HorizonModel(), np.zeros(2), sims=40, add_noise=False)
    tree = result.tree
    for b in range(2):
        n = tree.num_nodes[b]
        assert tree.depth[b, :n].max() >= 5
        np.testing.assert_array_equal(tree.edge_reward[b, 1:n], (tree.depth[b, 1:n] - 1) % 3)


def test_device_path_builds_the_same_trees(monkeypatch):
    """The path for a model off the CPU (index_select / index_copy_ on the pool, a device-side
    packed buffer copied to the host, the selection copied to the device), run on the CPU."""
    from planners import buffers
    model, obs, _ = batch_of(ALL, 8, seed=4)
    host = _run(model, obs, sims=40, seed=3, add_noise=True)
    prefix_host = _run(_PrefixModel(), np.zeros(3), sims=20, add_noise=False)
    monkeypatch.setattr(buffers, "on_host", lambda device: False)
    device = _run(model, obs, sims=40, seed=3, add_noise=True)
    prefix_device = _run(_PrefixModel(), np.zeros(3), sims=20, add_noise=False)
    for a, b in ((host, device), (prefix_host, prefix_device)):
        np.testing.assert_array_equal(a.tree.children, b.tree.children)
        np.testing.assert_array_equal(a.tree.visit_count, b.tree.visit_count)
        np.testing.assert_array_equal(a.tree.value_sum, b.tree.value_sum)
        np.testing.assert_array_equal(a.action, b.action)
