"""The search on exact models of small deterministic MDPs (tests/exact_models.py): known answers."""
import numpy as np
import pytest
import torch

from planners.config import SearchConfig
from planners.objectives import LatentValue, Learned, RewardOnly
from planners.policies import plan
from planners.tree import ROOT, principal_variation
from tests.exact_models import ALL, BAIT, MDP, NUM_ACTIONS, ExactModel, batch_of, bandit_trap, chain, two_step

# pUCT with a value of 0 everywhere needs about 200 simulations on two_step: the "late" action
# looks worthless (Q 0 against 1) until it is revisited, which the exploration term only forces
# after ~50 root visits (measured: 150 simulations pick "early" on every two_step row, 200 "late").
# Gumbel's sequential halving gives every action its share and solves all three with 50.
PUCT_SIMS = 300
GUMBEL_SIMS = 64
OBJECTIVES = [pytest.param(Learned(0.97), id="learned"),
              pytest.param(RewardOnly(4, 0.97), id="reward-only-4")]


def _search(model, obs, objective, sims, algorithm="puct", **kw):
    kw.setdefault("add_noise", False)
    kw.setdefault("deterministic", True)
    return plan(model, objective, obs, SearchConfig(num_simulations=sims, algorithm=algorithm),
                  rng=np.random.default_rng(0), **kw)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("algorithm,sims", [("puct", PUCT_SIMS), ("gumbel", GUMBEL_SIMS)])
@pytest.mark.parametrize("make", ALL, ids=lambda m: m.__name__)
def test_single_mdp_optimal_action(make, algorithm, sims, objective):
    for seed in range(2):  # two labelings of the actions
        mdp = make().shuffled(np.random.default_rng(seed))
        assert mdp.greedy_action != mdp.optimal_action  # the search has to look ahead
        model = ExactModel([mdp])
        result = _search(model, model.root_obs([0]), objective, sims, algorithm)
        assert result.action[0] == mdp.optimal_action, (mdp.name, result.visit_counts)
        if algorithm == "puct":
            assert result.visit_counts[0].argmax() == mdp.optimal_action


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("algorithm,sims", [("puct", PUCT_SIMS), ("gumbel", GUMBEL_SIMS)])
def test_batch_of_64_different_mdps_in_one_search(algorithm, sims, objective):
    model, obs, mdps = batch_of(ALL, 64, seed=3)
    optimal = np.array([m.optimal_action for m in mdps])
    assert len(set(optimal.tolist())) > 1 and len({m.name for m in mdps}) == 3
    calls_before = model.calls
    result = _search(model, obs, objective, sims, algorithm)
    assert model.calls - calls_before == sims  # one batched model call per simulation
    np.testing.assert_array_equal(result.action, optimal)
    # Trees do not interact: each row searched alone builds the same tree as in the batch.
    for b in (0, 1, 2, 37):
        alone_model = ExactModel([mdps[b]])
        alone = _search(alone_model, alone_model.root_obs([0]), objective, sims, algorithm)
        np.testing.assert_array_equal(alone.visit_counts[0], result.visit_counts[b])
        np.testing.assert_allclose(alone.q_values[0], result.q_values[b])


def test_root_values_and_q_match_the_mdp():
    """two_step under RewardOnly(2, discount 0.5): Q(early) = 1 and Q(half) = 0.5 exactly; Q(late)
    = 0 + 0.5 * 3 = 1.5 for its best continuation, and the search's mean tends to it."""
    mdp = two_step()
    model = ExactModel([mdp])
    result = _search(model, model.root_obs([0]), RewardOnly(2, 0.5), PUCT_SIMS)
    q = result.q_values[0]
    assert q[mdp.label("early")] == pytest.approx(1.0)
    assert 1.3 < q[mdp.label("late")] < 1.5
    assert q[mdp.label("half")] == pytest.approx(0.5)
    assert np.isnan(q[3])  # the illegal action is never tried
    assert 1.0 < result.root_value[0] < 1.5  # above what the greedy "early" is worth
    assert result.max_depth[0] == 2  # the horizon


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
def test_invalid_actions_never_selected_at_any_depth(algorithm):
    """Illegal actions pay BAIT = 100 in the exact model: a search that took one would see it."""
    model, obs, mdps = batch_of(ALL, 12, seed=5)
    result = _search(model, obs, Learned(0.97), 100, algorithm, add_noise=True, deterministic=False)
    tree = result.tree
    assert np.abs(tree.edge_reward).max() < BAIT
    # Replay every edge of every tree through the MDP tables: each is a legal transition.
    for b in range(len(mdps)):
        state = {ROOT: int(obs[b])}
        for node in range(1, tree.num_nodes[b]):
            parent, action = tree.parent[b, node], tree.action_from_parent[b, node]
            s = state[parent]
            assert model.legal[s, action], (b, node)
            state[node] = int(model.next_state[s, action])
        for node, s in state.items():  # selection may take exactly the model's legal actions
            np.testing.assert_array_equal(tree.legal[b, node], model.legal[s].numpy())
    assert (result.visit_counts[~model.legal[obs].numpy()] == 0).all()
    assert model.legal[obs, torch.as_tensor(result.action)].all()


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
def test_root_action_mask_is_obeyed(algorithm):
    """Masking the optimal root action: the search takes the best remaining one, never the masked."""
    mdp = bandit_trap().shuffled(np.random.default_rng(0))
    model = ExactModel([mdp])
    mask = np.ones((1, 4), bool)
    mask[0, mdp.label("safe")] = False
    result = _search(model, model.root_obs([0]), Learned(0.97), 100, algorithm, action_mask=mask)
    assert result.visit_counts[0, mdp.label("safe")] == 0
    assert result.tree.children[0, ROOT, mdp.label("safe")] == -1
    # Without "safe", "zero" (0) beats the trap (1 - 0.97 - 0.97^2 - ...).
    assert result.action[0] == mdp.label("zero")
    assert result.prior[0, mdp.label("safe")] == 0
    with pytest.raises(ValueError, match="action_mask must have shape"):
        _search(model, model.root_obs([0]), Learned(), 10, action_mask=np.ones((1, 3), bool))
    with pytest.raises(ValueError, match="at least one legal action"):
        _search(model, model.root_obs([0]), Learned(), 10, action_mask=np.zeros((1, 4), bool))


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
def test_terminal_states_are_not_expanded_past(algorithm):
    """Any action out of a terminal state pays BAIT in the exact model; none is ever in a tree."""
    model, obs, mdps = batch_of(ALL, 9, seed=2)
    result = _search(model, obs, Learned(0.97), 200, algorithm)
    tree = result.tree
    for b in range(len(mdps)):
        n = tree.num_nodes[b]
        assert tree.terminal[b, :n].any()  # every MDP here ends somewhere within reach
        assert (tree.children[b, :n][tree.terminal[b, :n]] == -1).all()
        # Terminal leaves keep a value of 0 however often they are backed up.
        assert (tree.value_sum[b, :n][tree.terminal[b, :n]] == 0).all()
    assert np.abs(tree.edge_reward).max() < BAIT
    # The chain's goal is terminal: the path right, right, right ends there, and no deeper.
    for b, m in enumerate(mdps):
        if m.name == "chain":
            assert result.max_depth[b] == 3


class StateTable(torch.nn.Module):
    """A value over the exact model's states (its latents are one-hot): values[state]."""

    def __init__(self, values):
        super().__init__()
        self.values = torch.as_tensor(values, dtype=torch.float32)

    def forward(self, latent):
        return latent @ self.values


@pytest.mark.parametrize("algorithm,sims", [("puct", 100), ("gumbel", GUMBEL_SIMS)])
def test_terminal_values_are_backed_up_and_nothing_beyond_them_is_expanded(algorithm, sims):
    """chain(3) under a value over states (LatentValue, with the predicted rewards): the state that
    quitting ends in is worth 5, the chain's goal 2, the rest 0. A value over states keeps its
    value at terminal states, so Q(quit) = 0.2 + 0.97 * 5 beats right, right, right
    (0.97^2 * 1 + 0.97^3 * 2); with terminal values forced to 0 it would not. Out of a terminal
    state every action pays BAIT: no edge in any tree may carry it."""
    mdps = [chain(3).shuffled(np.random.default_rng(seed)) for seed in range(4)]
    model = ExactModel(mdps)
    values = np.zeros(model.num_states)
    for m, off in zip(mdps, model.offsets):
        values[off + 4], values[off + 3] = 5.0, 2.0  # the quit end, the goal
    objective = LatentValue(StateTable(values), with_reward=True, discount=0.97)
    result = _search(model, model.root_obs(range(4)), objective, sims, algorithm)
    tree = result.tree
    np.testing.assert_array_equal(result.action, [m.label("quit") for m in mdps])
    for b, m in enumerate(mdps):
        assert result.q_values[b, m.label("quit")] == pytest.approx(0.2 + 0.97 * 5.0)
        n = tree.num_nodes[b]
        terminal = tree.terminal[b, :n]
        assert terminal.sum() >= 2  # both ends were reached
        assert (tree.children[b, :n][terminal] == -1).all()
        assert not terminal[tree.parent[b, 1:n]].any()  # no node below a terminal one
        # Every backup through a terminal node brings its terminal value, and nothing else.
        np.testing.assert_allclose(tree.value_sum[b, :n][terminal],
                                   tree.visit_count[b, :n][terminal] * tree.leaf_value[b, :n][terminal])
        assert set(tree.leaf_value[b, :n][terminal].tolist()) == {5.0, 2.0}
    assert np.abs(tree.edge_reward).max() < BAIT


def test_a_terminal_root_is_worth_its_terminal_value():
    mdp = chain()
    model = ExactModel([mdp])
    values = np.zeros(model.num_states)
    values[3] = 2.0  # the chain's goal
    goal = _search(model, model.root_obs([0]) + 3, LatentValue(StateTable(values)), 5)
    assert goal.tree.num_nodes[0] == 1 and goal.root_value[0] == pytest.approx(2.0)


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
def test_terminal_root_is_never_expanded(algorithm):
    mdp = chain()
    model = ExactModel([mdp])
    goal = model.root_obs([0]) + 3  # the chain's goal state
    result = _search(model, goal, Learned(), 5, algorithm)
    assert result.tree.num_nodes[0] == 1
    assert result.visit_counts.sum() == 0 and result.root_value[0] == 0
    if algorithm == "puct":
        np.testing.assert_allclose(result.action_weights[0], result.prior[0])
    else:  # nothing to improve on: every action alike
        np.testing.assert_allclose(result.action_weights[0], 0.25)


def test_principal_variation_follows_the_most_visited_path():
    mdp = chain(3).shuffled(np.random.default_rng(1))
    model = ExactModel([mdp])
    result = _search(model, model.root_obs([0]), Learned(0.97), PUCT_SIMS)
    right = mdp.label("right")
    assert principal_variation(result.tree, 0) == [right, right, right]
    mdp2 = two_step().shuffled(np.random.default_rng(1))
    model = ExactModel([mdp, mdp2])
    result = _search(model, model.root_obs([0, 1]), Learned(0.97), PUCT_SIMS)
    assert principal_variation(result.tree, 1) == [mdp2.label("late")] * 2
    # A tree without visits below the root has an empty principal variation.
    empty = _search(model, model.root_obs([0]) + 3, Learned(), 3)
    assert principal_variation(empty.tree, 0) == []


class EndsAtStates(Learned):
    """The learned objective, with the episode ended at the given global states (Objective.ends)."""

    def __init__(self, states, discount=0.97):
        super().__init__(discount)
        self.states = list(states)

    def ends(self, model, out):
        return out.latent[:, self.states].sum(dim=1) > 0.5


@pytest.mark.parametrize("algorithm,sims", [("puct", 100), ("gumbel", GUMBEL_SIMS)])
def test_states_an_objective_ends_in_are_absorbing(algorithm, sims):
    """bandit_trap: "trap" pays 1, then -1 per step forever, so the learned objective takes "safe"
    (0.5). An objective that ends the episode in the trap state (a goal reached) counts the 1 and
    nothing beyond it: "trap" becomes optimal, and no node below the trap state is expanded."""
    mdps = [bandit_trap().shuffled(np.random.default_rng(seed)) for seed in range(3)]
    model = ExactModel(mdps)
    plain = _search(model, model.root_obs(range(3)), Learned(0.97), sims, algorithm)
    np.testing.assert_array_equal(plain.action, [m.label("safe") for m in mdps])
    trap_states = [int(off) + 2 for off in model.offsets[:-1]]
    result = _search(model, model.root_obs(range(3)), EndsAtStates(trap_states), sims, algorithm)
    np.testing.assert_array_equal(result.action, [m.label("trap") for m in mdps])
    tree = result.tree
    for b, m in enumerate(mdps):
        assert result.q_values[b, m.label("trap")] == pytest.approx(1.0)
        n = tree.num_nodes[b]
        ended = tree.terminal[b, :n]
        assert ended.any() and (tree.children[b, :n][ended] == -1).all()
        assert not ended[tree.parent[b, 1:n]].any()  # nothing below a state the objective ended


def _lure(labels_seed: int, lure_logit: float) -> MDP:
    """One step, three endings paying 1 ("best"), 0.5 ("lure") and 0; the prior favours the lure."""
    mdp = MDP("lure", ["best", "lure", "worst"], 2, {(0, "best"): (1, 1.0), (0, "lure"): (1, 0.5),
                                                     (0, "worst"): (1, 0.0)},
              terminal=[1], optimal="best", greedy="best").shuffled(np.random.default_rng(labels_seed))
    mdp.logits = np.zeros((2, NUM_ACTIONS))
    mdp.logits[0, mdp.label("lure")] = lure_logit
    return mdp


@pytest.mark.parametrize("labels_seed", range(4))
def test_the_improved_target_follows_the_values_where_the_visits_follow_the_prior(labels_seed):
    # LunarLander's failure in small: a prior that learned the wrong action draws pUCT's visits, so
    # a visit target teaches the prior what it already believes; the improved policy (Gumbel
    # MuZero's) moves toward what the search found, from the same tree.
    mdp = _lure(labels_seed, lure_logit=2.0)
    model = ExactModel([mdp])
    targets = {}
    for target in ("visits", "improved"):
        config = SearchConfig(num_simulations=16, policy_target=target)
        out = plan(model, Learned(0.97), model.root_obs([0]), config, rng=np.random.default_rng(0),
                   add_noise=False, deterministic=True)
        targets[target] = out
    visits, improved = targets["visits"], targets["improved"]
    np.testing.assert_array_equal(visits.visit_counts, improved.visit_counts)  # same search, same tree
    np.testing.assert_array_equal(visits.action, improved.action)  # and the same action played
    best, lure, legal = mdp.label("best"), mdp.label("lure"), model.legal[0].numpy()
    assert visits.action_weights[0, lure] >= visits.action_weights[0, best]
    assert improved.action_weights[0, best] >= 0.7
    # softmax(log prior + (c_visit + max visits) * c_scale * min-max(completed Q)) over the legal
    # actions, an unvisited one's Q completed by mctx's mixed value (the root's raw value is 0 here).
    n, prior = improved.visit_counts[0, legal], improved.prior[0, legal]
    q = improved.q_values[0, legal]
    seen = n > 0
    mixed = n.sum() * (prior[seen] * q[seen]).sum() / prior[seen].sum() / (n.sum() + 1)
    q = np.where(seen, q, mixed)
    sigma = (50.0 + n.max()) * 0.1 * (q - q.min()) / (q.max() - q.min())
    expected = np.exp(np.log(prior) + sigma)
    np.testing.assert_allclose(improved.action_weights[0, legal], expected / expected.sum(), rtol=1e-9)
    assert (improved.action_weights[0, ~legal] == 0).all()  # never an illegal action


def test_auto_targets_each_algorithms_own_and_gumbel_can_target_its_visits():
    mdp = _lure(0, lure_logit=2.0)
    model = ExactModel([mdp])

    def weights(**kw):
        return plan(model, Learned(0.97), model.root_obs([0]), SearchConfig(num_simulations=16, **kw),
                    rng=np.random.default_rng(0), add_noise=False, deterministic=True)

    for algorithm in ("puct", "gumbel"):
        own = "visits" if algorithm == "puct" else "improved"
        auto = weights(algorithm=algorithm)
        np.testing.assert_array_equal(auto.action_weights, weights(algorithm=algorithm, policy_target=own).action_weights)
    gumbel_visits = weights(algorithm="gumbel", policy_target="visits")
    np.testing.assert_allclose(gumbel_visits.action_weights, gumbel_visits.visit_counts / 16)
    with pytest.raises(ValueError, match="search.policy_target must be 'auto', 'visits' or 'improved'"):
        SearchConfig(policy_target="q")
