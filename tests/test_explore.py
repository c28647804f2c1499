"""Explorers (agent/explore.py): a share of self-play envs pursue targets of their own, for the
model's coverage off the training policy; their states train the model but not the policy, nor the
value unless explore_trains_value."""
import dataclasses

import numpy as np
import pytest
import torch

from agent.config import EXPLORE_FAMILIES
from agent.aux_values import AuxValueHead
from agent.explore import (ARCHIVE_SIZE, CELL_WIDTH, FAMILIES, INTRINSIC_HEAD, Explorers, explorer_count,
                           hold_entry)
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
        explorers.observe(b, np.random.default_rng(0))
    seen = np.concatenate(batches)
    np.testing.assert_allclose(explorers.mean, seen.mean(0))
    np.testing.assert_allclose(explorers.std, [seen[:, 0].std(), 1.0])  # the constant entry gets unit spread
    explorers.redraw(np.array([True, True, True]), np.random.default_rng(0))
    assert ((explorers.family.target >= -2) & (explorers.family.target <= 2)).all()
    before = explorers.state_dict()
    explorers.redraw(np.array([False, True, False]), np.random.default_rng(1))
    assert explorers.family.entry[0] == before["entry"][0] and explorers.family.target[2] == before["target"][2]
    assert explorers.family.target[1] != before["target"][1]
    base = Learned(0.9)
    kept = explorers.objective(base)
    explorers.redraw(np.array([True, False, False]), np.random.default_rng(2))
    assert explorers.objective(base) is kept  # one objective per base: its checks ran once
    np.testing.assert_allclose(kept.penalty.fn.target.numpy(), explorers.family.target, rtol=1e-6)
    assert explorer_count(0.25, 8) == 2 and explorer_count(0.0, 8) == 0 and explorer_count(0.99, 4) == 3
    assert tuple(FAMILIES) == EXPLORE_FAMILIES  # what the config accepts is what Explorers builds


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


@pytest.mark.parametrize("family", EXPLORE_FAMILIES)
def test_a_run_with_explorers_stopped_and_resumed_equals_a_run_that_never_stopped(tmp_path, family, monkeypatch):
    monkeypatch.setattr("agent.explore.FREEZE_AFTER", 64)  # visit-count: cells fixed before the stop at 120
    straight, resumed = stopped_and_resumed(tmp_path, extra=EXPLORE + [f"explore_family={family}"])
    straight, resumed = straight._selfplay.explorers.state_dict(), resumed._selfplay.explorers.state_dict()
    assert straight.keys() == resumed.keys()
    for name in straight:
        np.testing.assert_array_equal(straight[name], resumed[name])
    if family == "visit-count":
        assert straight["width"] is not None and straight["visits"].sum() == 240


def test_the_novelty_archive_is_a_uniform_sample_of_every_observation_seen():
    def archive(seed):
        explorers = Explorers(2, obs_size=1, weight=1.0, family="novelty")
        rng = np.random.default_rng(seed)
        for start in range(0, 10_000, 8):
            explorers.observe(np.arange(start, start + 8, dtype=np.float64)[:, None], rng)
            if start + 8 == ARCHIVE_SIZE:  # until it is full it holds everything, in order
                np.testing.assert_array_equal(explorers.family.archive[:, 0], np.arange(ARCHIVE_SIZE))
        return explorers.family.archive[:, 0].copy()

    kept = archive(0)
    assert len(np.unique(kept)) == ARCHIVE_SIZE and kept.max() < 10_000
    assert abs(kept.mean() - 4999.5) < 300  # ~5 standard errors of a uniform sample's mean
    assert (kept >= ARCHIVE_SIZE).mean() > 0.7  # later observations displaced most of the first ones
    np.testing.assert_array_equal(archive(0), kept)  # same draws, same archive
    assert not np.array_equal(archive(1), kept)


def test_a_novelty_explorer_walks_to_the_cells_it_has_not_seen():
    """The Corridor fixture walks LEFT from the middle. With the left half in the archive (as if
    self-play had only ever been there), the novelty objective over the learned one (which pays 1 at
    the left end) takes it into the unseen right half and keeps it there (the archive is not
    updated here, so staying among unseen cells pays more than ending the episode); with the right
    half in the archive, into the left half. (32 simulations: at the fixture's 8 its prior, 0.79 on
    left, outvotes the Q values, which already favour the unseen side.)"""
    import envs
    agent = load_fixture("corridor")
    agent.config.search = dataclasses.replace(agent.config.search, num_simulations=32)
    env = envs.make("glasszero/Corridor-v0", None)
    corridor = env.unwrapped
    middle = corridor.length // 2
    for seen_cells, side in ((range(0, middle + 1), 1), (range(middle, corridor.length), -1)):
        explorers = Explorers(1, obs_size=int(np.prod(agent.obs_shape)), weight=1.0, family="novelty")
        for cell in seen_cells:
            corridor.position = cell
            explorers.observe(np.repeat(corridor._obs()[None], 4, axis=0), np.random.default_rng(0))
        agent.set_objective(explorers.objective(Learned(agent.config.discount)), prior="learned")
        env.reset(seed=0)
        corridor.position, done, visited = middle, False, []
        obs = corridor._obs()
        while not done:
            obs, _, terminated, truncated, info = env.step(int(agent.predict(obs)[0]))
            done = terminated or truncated
            visited.append(info["position"])
        assert all((p - middle) * side > 0 for p in visited), (list(seen_cells), visited)


def test_with_explore_trains_value_explorer_states_train_the_value_too():
    agent = tiny_agent(seed=3, extra=EXPLORE + ["explore_family=novelty", "explore_trains_value=true"])
    agent.learn(160)
    r = agent.replay
    batch = agent.learner.make_batch(r, agent.objective, np.random.default_rng(0), agent.num_timesteps, 1.0)
    u = r.unroll(batch.index, agent.config.unroll_steps, np.random.default_rng(0))
    assert (u.explore & u.known).any()
    np.testing.assert_array_equal(batch.value_mask.numpy().astype(bool), u.known)


@pytest.mark.parametrize("extra, flag", [(["explore_fraction=1.0"], "explore_fraction"),
                                         (["explore_weight=0"], "explore_weight"),
                                         (EXPLORE + ["explore_family=curiosity"], "explore_family"),
                                         (EXPLORE + ["net.use_decoder=false"], "net.use_decoder"),
                                         (EXPLORE + ["explore_family=visit-count", "explore_discount=0"],
                                          "explore_discount"),
                                         (EXPLORE + ["explore_family=visit-count",
                                                     'aux_values=[["explore", "tests.test_agent_ez:cart_near_one"]]'],
                                          "another NAME")])
def test_explorers_refuse_settings_they_cannot_serve(extra, flag):
    with pytest.raises(ValueError, match=flag):
        tiny_agent(extra=extra)


def visit_count_explorers(count=2, obs_size=2):
    return Explorers(count, obs_size, weight=1.0, family="visit-count",
                     heads={INTRINSIC_HEAD: AuxValueHead(obs_size)})


def test_visit_counts_pay_one_over_the_root_of_one_plus_the_visits_of_the_cell_entered(monkeypatch):
    monkeypatch.setattr("agent.explore.FREEZE_AFTER", 400)
    explorers, rng = visit_count_explorers(), np.random.default_rng(0)
    explorers.load_state_dict(visit_count_explorers().state_dict())  # no visits, no widths yet
    early = rng.normal(size=(400, 2)) * [1.0, 0.01]  # entries of very different spreads
    probe = np.array([[0.1, 0.001], [5.0, 0.0], [0.1, 0.05]])
    for chunk in np.split(early, 50):
        np.testing.assert_array_equal(explorers.rewards(probe), 0.0)  # no cells before the widths are fixed
        explorers.observe(chunk, rng)
    width = CELL_WIDTH * early.astype(np.float32).astype(np.float64).std(0)
    np.testing.assert_allclose(explorers.family.width, width, rtol=1e-6)
    cell = np.floor(early.astype(np.float32) / width)  # as observed: float32
    visits = [int((cell == np.floor(p.astype(np.float32) / width)).all(1).sum()) for p in probe]
    assert visits[0] > 5 and visits[1] == visits[2] == 0  # the middle; 5 spreads out; 5 spreads up
    np.testing.assert_allclose(explorers.rewards(probe)[:, 0], 1 / np.sqrt(1 + np.array(visits)), rtol=1e-6)
    explorers.observe(probe[1:2].repeat(3, 0), rng)  # three visits to the far cell
    assert explorers.rewards(probe)[1, 0] == pytest.approx(0.5)
    copy = visit_count_explorers()
    copy.load_state_dict(explorers.state_dict())  # counts and widths survive a checkpoint
    np.testing.assert_array_equal(copy.rewards(probe), explorers.rewards(probe))


def test_visit_count_rewards_are_stored_and_their_head_fits_every_known_state(monkeypatch):
    monkeypatch.setattr("agent.explore.FREEZE_AFTER", 64)
    agent = tiny_agent(seed=3, extra=EXPLORE + ["explore_family=visit-count"])
    assert agent.aux.names == [INTRINSIC_HEAD] and agent.model.decoder is not None
    agent.learn(200)
    r = agent.replay
    bonus = r.aux_reward[: r.size, 0][~r.final[: r.size]]
    assert (bonus[:8] == 0).all() and (bonus[-40:] > 0).all() and bonus.max() <= 1.0
    batch = agent.learner.make_batch(r, agent.objective, np.random.default_rng(0), agent.num_timesteps, 1.0)
    u = r.unroll(batch.index, agent.config.unroll_steps, np.random.default_rng(0))
    assert (u.explore & u.known).any() and (batch.value_mask.numpy()[u.explore] == 0).all()
    latents = [torch.zeros(len(u.known), agent.aux.heads[INTRINSIC_HEAD].net[1].in_features)] * len(u.known[0])
    ones = {INTRINSIC_HEAD: torch.ones(u.known.shape)}
    loss = agent.aux.losses(latents, ones, batch.value_mask, batch.state_mask)[f"aux_{INTRINSIC_HEAD}"]
    assert (loss[u.explore[:, 0] & u.known[:, 0]] > 0).all()  # the explorers' own states count


def test_a_visit_count_explorers_search_values_what_its_intrinsic_value_head_values():
    """The Corridor fixture walks LEFT from the middle, to the end that pays 1. Explorers add
    explore_weight times the intrinsic value head at the leaves: with a head that values the right
    half (3, as if it had never been visited; 0 on the left), the search's Q at the middle puts
    right above left; with no intrinsic value, left above right. (Q, not the visits: within 32
    simulations the fixture's prior, 0.79 on left, keeps most visits on the left, whose subtree
    reaches the right half too by turning back. The right end, like the left, ends the episode:
    there the intrinsic value is 0, as the value of any reward past an episode's end.)"""
    import envs
    agent = load_fixture("corridor")
    agent.config.search = dataclasses.replace(agent.config.search, num_simulations=32)  # as above: Q over prior
    env = envs.make("glasszero/Corridor-v0", None)
    corridor = env.unwrapped
    middle = corridor.length // 2
    obs = []
    for cell in range(corridor.length):
        corridor.position = cell
        obs.append(corridor._obs())
    value = [3.0 if middle < c < corridor.length - 1 else 0.0 for c in range(corridor.length)]
    with torch.no_grad():  # fitted as the learner fits it: on encoded latents and one step along the unroll
        encoded = agent.model.initial_inference(np.stack(obs)).latent
        cells = torch.arange(corridor.length)
        stepped = [agent.model.recurrent_inference(encoded, torch.full_like(cells, a)).latent for a in (0, 1)]
    latents = torch.cat([encoded, *stepped])
    target = torch.tensor(value + [value[max(c - 1, 0)] for c in cells] + [value[min(c + 1, middle * 2)] for c in cells])
    for weight, side in ((1.0, 1), (1e-6, -1)):
        torch.manual_seed(0)
        head = AuxValueHead(latents.shape[1])
        optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
        for _ in range(500):
            optimizer.zero_grad()
            ((head(latents) - target) ** 2).mean().backward()
            optimizer.step()
        explorers = Explorers(1, int(np.prod(agent.obs_shape)), weight=weight, family="visit-count",
                              heads={INTRINSIC_HEAD: head})
        agent.set_objective(explorers.objective(Learned(agent.config.discount)), prior="learned")
        q = [a["q"] for a in agent.explain(obs[middle])["actions"]]  # action 0: left, 1: right
        assert (q[1] - q[0]) * side > 0.3, (weight, q)


def test_the_visit_count_family_without_explorers_trains_no_head_and_saves_before_its_cells_are_fixed(tmp_path):
    agent = tiny_agent(extra=["explore_family=visit-count"])  # explore_fraction 0: no explorers
    agent.learn(8)
    assert agent.aux is None
    explorers = tiny_agent(extra=EXPLORE + ["explore_family=visit-count"])
    explorers.learn(40)
    assert explorers._selfplay.explorers.family.width is None
    explorers.save_resume(tmp_path / "resume.pt")  # a checkpoint before the widths are fixed


def test_visit_count_explorers_need_no_decoder():
    agent = tiny_agent(extra=EXPLORE + ["explore_family=visit-count", "net.use_decoder=false"])
    assert agent.model.decoder is None and agent.aux.names == [INTRINSIC_HEAD]
    agent.learn(40)


def test_the_intrinsic_head_fits_returns_at_explore_discount(monkeypatch):
    from agent.targets import value_targets
    monkeypatch.setattr("agent.explore.FREEZE_AFTER", 64)
    agent = tiny_agent(seed=3, extra=EXPLORE + ["explore_family=visit-count", "explore_discount=0.9"])
    agent.learn(160)
    last = agent.aux.heads[INTRINSIC_HEAD].net[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)  # bootstraps at 0: the targets are discounted sums of stored bonuses
    d = agent.learner.draft(agent.replay, agent.objective, np.random.default_rng(0), agent.num_timesteps, 1.0)
    c, bonus = agent.config, agent.replay.aux_reward[:, 0]
    assert bonus.max() > 0
    for discount, same in ((0.9, True), (c.discount, False)):
        z = value_targets(agent.replay, d.unroll, td_steps=c.td_steps, discount=discount, env_steps=agent.num_timesteps,
                          correction_interval=c.td_correction_interval, bootstrap=lambda obs: np.zeros(len(obs)),
                          rewards=bonus)[0]
        assert np.allclose(d.aux_value[INTRINSIC_HEAD], z, atol=1e-6) is same, discount


def test_a_distributed_runs_writer_counts_every_workers_transitions_and_saves_the_counts(monkeypatch):
    """Ray actors count only their own envs' observations: the driver's writer recounts the
    visit-count rewards over every worker's transitions before they reach replay, and saves the
    counts with its state."""
    from agent.distributed.writer import ReplayWriter
    from agent.replay import Replay
    from agent.selfplay import Transition
    monkeypatch.setattr("agent.explore.FREEZE_AFTER", 4)
    counter = visit_count_explorers(count=1)
    replay = Replay(100, (2,), 2, num_aux=2)  # a user's column, then the explorers'
    writer = ReplayWriter(replay, workers=2, num_envs=2, obs_shape=(2,), obs_dtype=np.float32, counter=counter)
    spread = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)  # cells 0.25 wide (half of 0.5, the spread)
    here, there = np.array([[0.6, 0.6]] * 2, np.float32), np.array([[0.9, 0.9]] * 2, np.float32)

    def step(worker, obs, following, ended=()):
        """One vector step; `ended`: where the finished envs' episodes ended, in env order (`following`
        holds the next ones' starts there)."""
        done = np.array([len(ended) == 2, len(ended) > 0])  # env 1 first, then both
        t = Transition(obs, np.zeros(2, np.int64), np.zeros(2), np.full((2, 2), 0.5), np.zeros(2, bool), done,
                       np.array(ended, np.float32).reshape(len(ended), 2),
                       aux_reward=np.array([[7.0, -1.0]] * 2, np.float32))  # -1: an actor's own count
        at = replay.size
        writer.write(worker, t, following, 0)
        return replay.aux_reward[at: at + 2].copy()  # (an ended episode's last observation follows them)

    step(0, spread, spread)  # 2 observations: the widths wait for 4
    np.testing.assert_array_equal(step(1, spread, here), [[7.0, 1.0]] * 2)  # fixed from these 4; `here` unseen
    step(0, here, here)  # worker 0 acts in `here` twice
    start = np.array([[0.6, 0.6], [0.0, 0.0]], np.float32)  # env 1's next episode starts in a cell seen twice
    np.testing.assert_allclose(step(1, here, start, ended=[here[0]]), [[7.0, 1 / np.sqrt(5)]] * 2)  # both workers' visits
    np.testing.assert_allclose(step(0, there, there)[:, 1], 1 / np.sqrt(3))
    ends = step(1, there, np.zeros((2, 2), np.float32), ended=[here[0], spread[1]])  # both end, in different cells
    np.testing.assert_allclose(ends[:, 1], [1 / np.sqrt(5), 1 / np.sqrt(3)])  # `here`: 4 visits, [1, 1]: 2
    saved = writer.state_dict()["explorers"]
    assert int(saved["visits"].sum()) == 12  # 4 when the widths were fixed, then 2 + 2 + 2 + 2
    restored = visit_count_explorers(count=1)
    restored.load_state_dict(saved)
    probe = np.concatenate([spread, here, there])
    np.testing.assert_array_equal(restored.rewards(probe), counter.rewards(probe))
