"""Explorers (agent/explore.py): a share of self-play envs pursue targets of their own, for the
model's coverage off the training policy; their states train the model but not the policy or value."""
import numpy as np
import pytest
import torch

from agent.explore import Explorers, explorer_count, hold_entry
from nets.output import ModelOutput
from planners.objectives import Learned
from tests.test_agent_ez import tiny_agent
from tests.test_objective_swap import corridor_ends, load_fixture
from tests.test_reliability import stopped_and_resumed

EXPLORE = ["explore_fraction=0.5"]  # 2 of the tiny agent's 4 envs


class IdentityDecoder:
    """A model whose latent is its observation: decode is the identity."""
    has_decoder = True

    def decode(self, latent):
        return latent


def test_each_explorer_tree_is_credited_for_its_own_target():
    mean, std = np.array([0.0, 1.0, 0.0]), np.array([1.0, 2.0, 1.0])
    hold = hold_entry(Learned(0.9), entry=np.array([0, 1]), target=np.array([1.0, -1.0]), mean=mean, std=std,
                     weight=0.5)
    latent = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 9.0]])
    out = ModelOutput(latent=latent, reward=torch.tensor([1.0, 2.0]), value=torch.zeros(2),
                      policy_logits=torch.zeros(2, 2))
    # row 0 holds entry 0 at 1 spread: |3 - 1| = 2; row 1 holds entry 1 at -1 spread: |(1 - 1) / 2 + 1| = 1
    expected = torch.tensor([1.0 - 0.5 * 2.0, 2.0 - 0.5 * 1.0])
    torch.testing.assert_close(hold.edge_reward(IdentityDecoder(), None, None, out), expected)
    torch.testing.assert_close(hold.leaf_value(IdentityDecoder(), out), out.value)


def test_targets_are_drawn_against_the_running_spread_and_redrawn_only_for_new_episodes():
    explorers = Explorers(3, obs_size=2, weight=1.0)
    batches = [np.array([[0.0, 5.0], [2.0, 5.0]]), np.array([[4.0, 5.0]])]
    for b in batches:
        explorers.observe(b)
    seen = np.concatenate(batches)
    np.testing.assert_allclose(explorers.mean, seen.mean(0))
    np.testing.assert_allclose(explorers.std, [seen[:, 0].std(), 1.0])  # the constant entry gets unit spread
    explorers.redraw(np.array([True, True, True]), np.random.default_rng(0))
    assert ((explorers.target >= -2) & (explorers.target <= 2)).all()
    before = explorers.state_dict()
    explorers.redraw(np.array([False, True, False]), np.random.default_rng(1))
    assert explorers.entry[0] == before["entry"][0] and explorers.target[2] == before["target"][2]
    assert explorers.target[1] != before["target"][1]
    base = Learned(0.9)
    kept = explorers.objective(base)
    explorers.redraw(np.array([True, False, False]), np.random.default_rng(2))
    assert explorers.objective(base) is kept  # one objective per base: its checks ran once
    np.testing.assert_allclose(kept.penalty.fn.target.numpy(), explorers.target, rtol=1e-6)
    assert explorer_count(0.25, 8) == 2 and explorer_count(0.0, 8) == 0 and explorer_count(0.99, 4) == 3


def test_an_explorer_objective_steers_a_trained_agent_to_its_target():
    """The Corridor fixture was trained to walk LEFT, from the middle cell; holding the position
    entry at +1 spread (the right end) under the learned objective, with the learned prior that
    explorers search with in training, takes it to the right end from the middle and the cells
    right of it. (From the cells next to the left end it ends there: that end pays 1 and, being
    absorbing, ends the penalties too, the optimum of this objective from cell 1.)"""
    import envs
    agent = load_fixture("corridor")
    D = int(np.prod(agent.obs_shape))
    agent.set_objective(hold_entry(Learned(agent.config.discount), np.array([0]), np.array([1.0]), np.zeros(D),
                                  np.ones(D), 1.0), prior="learned")
    env = envs.make("glasszero/Corridor-v0", None)
    for start in (3, 4, 5):
        env.reset(seed=0)
        corridor = env.unwrapped
        corridor.position, done = start, False
        obs = corridor._obs()
        while not done:
            obs, _, terminated, truncated, info = env.step(int(agent.predict(obs)[0]))
            done = terminated or truncated
        assert info["at_right_end"], (start, info)
    agent.set_objective("learned")
    assert corridor_ends(agent, episodes=8).count("R") == 0


def test_explorer_states_train_the_model_but_not_the_policy_or_value():
    agent = tiny_agent(seed=3, extra=EXPLORE)
    agent.learn(160)
    r = agent.replay
    acted = ~r.final[: r.size]
    assert r.explore[: r.size][acted].mean() == pytest.approx(0.5, abs=0.05)  # half the envs
    batch = agent.learner.make_batch(r, agent.objective, np.random.default_rng(0), agent.num_timesteps, 1.0)
    u = r.unroll(batch.index, agent.config.unroll_steps, np.random.default_rng(0))  # same starts, same flags
    explored = u.explore
    assert explored.any() and (~explored & u.acted).any()
    assert (batch.value_mask.numpy()[explored] == 0).all()
    assert (batch.state_mask.numpy()[explored] == 1).all()  # terminal head: every known state
    assert (batch.value_mask.numpy()[u.acted & ~explored] == 1).all()
    redo = np.zeros_like(explored)
    redo[: int(round(agent.config.reanalyze_fraction * agent.config.batch_size))] = True
    np.testing.assert_array_equal(batch.policy_mask.numpy().astype(bool), u.acted & (~explored | redo))
    assert "explore/ep_rew_mean" in agent.log_values() or not agent._explorer_returns


def test_a_run_with_explorers_stopped_and_resumed_equals_a_run_that_never_stopped(tmp_path):
    straight, resumed = stopped_and_resumed(tmp_path, extra=EXPLORE)
    np.testing.assert_array_equal(straight._selfplay.explorers.target, resumed._selfplay.explorers.target)


@pytest.mark.parametrize("extra, flag", [(["explore_fraction=1.0"], "explore_fraction"),
                                         (["explore_weight=0"], "explore_weight"),
                                         (EXPLORE + ["net.use_decoder=false"], "net.use_decoder")])
def test_explorers_refuse_settings_they_cannot_serve(extra, flag):
    with pytest.raises(ValueError, match=flag):
        tiny_agent(extra=extra)
