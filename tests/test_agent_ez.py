"""EZAgent end to end on CartPole with tiny networks: learning, checkpoints, determinism, resume,
Stable-Baselines3 compatibility, the command line and clear errors for bad inputs."""
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from agent.cli import main as cli_main
from agent.callbacks import CheckpointCallback
from agent.config import resolve_config as resolve
from agent.ez import EZAgent
from agent.replay import Replay

TINY = ["net.latent_dim=16", "net.hidden=[16]", "net.projection_hidden=16", "net.projection_dim=16",
        "net.projection_head_hidden=8", "search.num_simulations=4", "num_envs=4", "batch_size=32",
        "learning_starts=64", "replay_ratio=0.5", "lr=3e-3", "lr_warmup_steps=10",
        "target_update_interval=20", "unroll_steps=3"]
FIXED_OBS = np.array([[0.0, 0.0, 0.02, 0.0], [0.1, -0.3, -0.05, 0.4], [-0.2, 0.5, 0.1, -0.6]], np.float32)


def tiny_agent(seed=0, run_dir=None, extra=()):
    return EZAgent("CartPole-v1", resolve("CartPole-v1", sets=TINY + list(extra)), seed=seed,
                   device="cpu", run_dir=run_dir)


@pytest.fixture(scope="module")
def trained():
    """One short training run shared by several tests (records the losses of every step)."""
    agent = tiny_agent()
    losses = []
    step = agent._train_step
    agent._train_step = lambda beta: losses.append(step(beta)) or losses[-1]
    agent.learn(400, progress_bar=False)
    agent._train_step = step
    return agent, losses


def test_short_training_lowers_the_losses_on_a_fixed_batch(trained):
    agent, losses = trained
    # training starts with the vector step that reaches learning_starts=64: 85 steps x 4 envs x 0.5
    assert agent.num_timesteps == 400 and agent.learner.train_steps == 85 * 4 // 2
    assert all(np.isfinite(s["loss/total"]) for s in losses)
    rng = np.random.default_rng(123)
    batch = agent.learner.make_batch(agent.replay, agent.objective, rng, agent.num_timesteps, beta=1.0)

    def fixed_loss():
        with torch.no_grad():
            loss, _ = agent.learner.losses(batch)
        return {k: float(v.mean()) for k, v in loss.items()}

    before = fixed_loss()
    for _ in range(60):
        agent.learner.train_step(batch)
    after = fixed_loss()
    for k in ("value", "reward", "policy"):
        assert after[k] < before[k], (k, before, after)
    first = np.mean([s["loss/value"] + s["loss/reward"] for s in losses[:10]])
    last = np.mean([s["loss/value"] + s["loss/reward"] for s in losses[-10:]])
    assert last < first


def test_checkpoint_reloads_to_identical_greedy_actions(trained, tmp_path):
    agent, _ = trained
    path = agent.save(tmp_path / "model.pt")
    loaded = EZAgent.load(path, device="cpu")
    assert loaded.num_timesteps == agent.num_timesteps
    assert loaded.objective.describe() == agent.objective.describe()
    assert loaded.config == agent.config
    assert np.array_equal(loaded.predict(FIXED_OBS)[0], agent.predict(FIXED_OBS)[0])
    single, state = loaded.predict(FIXED_OBS[0])
    assert state is None and single.shape == () and single == agent.predict(FIXED_OBS)[0][0]


def test_same_seed_same_losses_and_actions():
    def run():
        agent = tiny_agent(seed=3)
        losses = []
        step = agent._train_step
        agent._train_step = lambda beta: losses.append(step(beta)["loss/total"]) or {"loss/total": losses[-1]}
        agent.learn(160, progress_bar=False)
        return losses, agent.predict(FIXED_OBS, deterministic=False)[0], agent.predict(FIXED_OBS)[0]

    a, b = run(), run()
    assert len(a[0]) > 0 and a[0] == b[0]
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])


def test_sb3_evaluate_policy_drives_the_agent_exactly(trained):
    """SB3's evaluate_policy on the agent returns what the agent's own greedy actions earn on the
    same (identically seeded) episodes."""
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    agent, _ = trained
    env = Monitor(gym.make("CartPole-v1"))
    env.reset(seed=11)
    returns, _ = evaluate_policy(agent, env, n_eval_episodes=3, return_episode_rewards=True)
    by_hand, env = [], gym.make("CartPole-v1")
    env.reset(seed=11)  # evaluate_policy resets the env itself before its first episode
    for _ in range(3):
        obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(int(agent.predict(obs)[0]))
            total, done = total + r, term or trunc
        by_hand.append(total)
    assert returns == by_hand


def test_explain_reports_every_root_action(trained):
    agent, _ = trained
    out = agent.explain(FIXED_OBS[0])
    assert [r["action"] for r in out["actions"]] == [0, 1]
    assert sum(r["visits"] for r in out["actions"]) > 0 and "visits" in out["text"]


def test_resume_continues_steps_optimizer_and_replay(tmp_path):
    agent = tiny_agent(run_dir=tmp_path)
    agent.learn(160, progress_bar=False, callback=CheckpointCallback(tmp_path))
    resumed = EZAgent.load(tmp_path / "resume.pt", device="cpu", run_dir=tmp_path)
    assert resumed.num_timesteps == 160 and resumed.replay.total == agent.replay.total
    assert resumed.learner.train_steps == agent.learner.train_steps
    assert resumed.learner.optimizer.state_dict()["state"].keys() == agent.learner.optimizer.state_dict()["state"].keys()
    resumed.learn(80, progress_bar=False, callback=CheckpointCallback(tmp_path))
    assert resumed.num_timesteps == 240 and resumed.learner.train_steps == agent.learner.train_steps + 40
    assert EZAgent.load(tmp_path / "resume.pt").num_timesteps == 240


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown environment id"):
        EZAgent("CartPol-v1")
    with pytest.raises(ValueError, match="only supports Discrete"):
        EZAgent("Pendulum-v1")
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        EZAgent.load(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"\x00garbage\xff" * 50)
    with pytest.raises(ValueError, match="corrupt"):
        EZAgent.load(bad)
    with pytest.raises(ValueError, match="unknown config key 'search.num_simultions'.*num_simulations"):
        resolve("CartPole-v1", sets=["search.num_simultions=5"])
    with pytest.raises(ValueError, match="expects int"):
        resolve("CartPole-v1", sets=["net.latent_dim=wide"])


def test_cli_unknown_set_key_exits_with_message(capsys, tmp_path):
    assert cli_main(["--steps", "8", "--logdir", str(tmp_path), "--set", "nope=1"]) == 2
    assert "unknown config key 'nope'" in capsys.readouterr().err


def test_cli_train_then_eval(tmp_path, capsys):
    sets = [x for s in TINY for x in ("--set", s)]
    rc = cli_main(["--steps", "96", "--eval-interval", "48", "--eval-episodes", "2", "--logdir", str(tmp_path),
                   "--no-progress", *sets, "--set", "learning_starts=32", "--log-interval", "16"])
    assert rc == 0
    run = tmp_path / "ez_CartPole-v1_s0"
    for name in ("config.yaml", "model.pt", "resume.pt", "evaluations.csv", "result.json", "audit_train.json"):
        assert (run / name).exists(), name
    assert list(run.glob("events.out.tfevents.*"))
    out = capsys.readouterr()
    assert "search amplification" in out.out + out.err and "core total" in out.out + out.err
    audit = json.loads((run / "audit_train.json").read_text())
    assert audit["episodes"] == 5 and set(audit["returns"]) == {"prior", "greedy", "search"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = set(EventAccumulator(str(run)).Reload().Tags()["scalars"])
    expected = {"eval/mean_return", "eval/std_return", "time/fps", "loss/policy", "loss/value", "loss/reward",
                "loss/consistency", "search/root_value", "search/depth", "search/entropy", "replay/size",
                "audit/search_amplification"}
    assert expected <= tags, expected - tags
    assert cli_main(["eval", "--checkpoint", str(run / "model.pt"), "--episodes", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    from agent.evaluation import evaluate
    agent = EZAgent.load(run / "model.pt")
    expected = evaluate(lambda obs: agent.predict(obs)[0], "CartPole-v1", 0, 2)  # the shared protocol
    assert report["episodes"] == 2 and report["returns"] == expected.returns.tolist()
    last = (run / "evaluations.csv").read_text().strip().splitlines()[-1].split(",")
    assert float(last[2]) == pytest.approx(float(np.mean(report["returns"])), abs=1e-4)  # the run's own final eval


def cart_near_one(obs, action, reward, next_obs, terminated):
    """An aux reward for the tests: keep the cart near x = 1 (batched numpy in, [B] out)."""
    return -np.abs(next_obs[:, 0] - 1.0)


def test_aux_value_head_learns_and_plugs_in_as_an_objective(tmp_path):
    agent = tiny_agent(extra=["aux_values=[[near_one, tests.test_agent_ez:cart_near_one]]"],
                       run_dir=tmp_path)
    agent.learn(240, progress_bar=False, callback=CheckpointCallback(tmp_path))
    # the stored aux rewards are the function's values on the real transitions
    r = agent.replay
    acted = np.flatnonzero(r.priority[: r.size] > 0)
    assert np.all(r.aux_reward[acted, 0] <= 0) and np.any(r.aux_reward[acted, 0] < -0.5)
    rng = np.random.default_rng(7)
    batch = agent.learner.make_batch(agent.replay, agent.objective, rng, agent.num_timesteps, beta=1.0)
    with torch.no_grad():
        before = float(agent.learner.losses(batch)[0]["aux_near_one"].mean())
    model_before = {k: v.clone() for k, v in agent.model.state_dict().items()}
    head = agent.aux.heads["near_one"]
    opt = agent.aux.optimizer
    for group in opt.param_groups:
        group["lr"] = 1e-2
    for _ in range(300):  # the aux loss alone: it moves the head and never the agent's networks
        loss = agent.learner.losses(batch)[0]["aux_near_one"].mean()
        opt.zero_grad()
        agent.learner.optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in agent.model.parameters())
        opt.step()
    with torch.no_grad():
        after = float(agent.learner.losses(batch)[0]["aux_near_one"].mean())
    assert after < 0.5 * before, (before, after)
    assert all(torch.equal(v, agent.model.state_dict()[k]) for k, v in model_before.items())
    # n-step returns of a reward <= 0 are <= 0 and the head learned the sign
    assert float(batch.aux_value["near_one"].max()) <= 0
    with torch.no_grad():
        pred = head(agent.model.initial_inference(FIXED_OBS).latent)
    assert pred.shape == (3,) and float(pred.mean()) < 0

    agent.set_objective("aux:near_one")
    assert "aux:near_one" in agent.objective.describe()
    path = agent.save(tmp_path / "model.pt")
    loaded = EZAgent.load(path, device="cpu")
    assert loaded.objective.describe() == agent.objective.describe()
    assert np.array_equal(loaded.predict(FIXED_OBS)[0], agent.predict(FIXED_OBS)[0])
    with pytest.raises(ValueError, match="no auxiliary value head"):
        loaded.set_objective("aux:other")
    resumed = EZAgent.load(tmp_path / "resume.pt", device="cpu")
    assert resumed.replay.aux_reward.shape[1] == 1 and resumed.aux.optimizer.state_dict()["state"]


def test_cli_aux_value_then_eval_with_it(tmp_path, capsys):
    sets = [x for s in TINY for x in ("--set", s)]
    assert cli_main(["--steps", "64", "--eval-interval", "64", "--eval-episodes", "1", "--logdir", str(tmp_path),
                     "--no-progress", *sets, "--set", "learning_starts=32", "--aux-value", "near_one",
                     "--aux-reward", "tests.test_agent_ez:cart_near_one"]) == 0
    capsys.readouterr()
    model = tmp_path / "ez_CartPole-v1_s0" / "model.pt"
    assert cli_main(["eval", "--checkpoint", str(model), "--episodes", "1", "--json", "--objective", "aux:near_one"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "aux:near_one" in report["objective"]
    assert cli_main(["--steps", "8", "--logdir", str(tmp_path), "--aux-value", "x"]) == 2
    assert "go in pairs" in capsys.readouterr().err


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3"])
def test_every_preset_builds_an_agent_within_the_capacity_budget(env_id):
    if env_id == "LunarLander-v3":
        pytest.importorskip("Box2D")
    from agent.config import PRESETS
    agent = EZAgent(env_id, seed=0, device="cpu")
    assert env_id in PRESETS and agent.config == resolve(env_id)
    obs = np.zeros(agent.obs_shape, dtype=np.float32)
    assert 0 <= int(agent.predict(obs)[0]) < agent.num_actions


def test_reanalyze_replaces_the_stored_policies_of_its_share_of_the_batch(trained):
    agent, _ = trained
    sentinel = np.zeros(agent.num_actions, np.float32)
    sentinel[0] = 1.0
    stored = agent.replay.policy.copy()
    agent.replay.policy[:] = sentinel  # what the acting search "stored"
    try:
        for fraction, fresh_rows in ((0.0, 0), (0.5, 16), (1.0, 32)):
            agent.config.reanalyze_fraction = fraction
            batch = agent.learner.make_batch(agent.replay, agent.objective, np.random.default_rng(5),
                                             agent.num_timesteps, beta=1.0)
            acted = batch.policy_mask.numpy().astype(bool)
            target = batch.target_policy.numpy()
            redone = acted & ~np.all(target == sentinel, axis=-1)
            assert redone[:fresh_rows][acted[:fresh_rows]].all()  # every acted state of the fresh share
            assert not redone[fresh_rows:].any()  # nothing else
            np.testing.assert_allclose(target[acted].sum(-1), 1.0, rtol=1e-5)
    finally:
        agent.replay.policy[:] = stored
        agent.config.reanalyze_fraction = 0.5


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
def test_replay_stores_the_policy_targets_of_the_search_in_use(algorithm):
    """pUCT stores visit fractions (multiples of 1/4 with 4 simulations); Gumbel stores its improved
    policy softmax(logits + sigma(completed Q)), which almost never is one."""
    agent = tiny_agent(extra=[f"search.algorithm={algorithm}", "learning_starts=1000"])
    agent.learn(40)
    r = agent.replay
    acted = r.priority[: r.size] > 0
    quarters = np.isclose(r.policy[: r.size][acted] * 4, np.round(r.policy[: r.size][acted] * 4), atol=1e-6)
    if algorithm == "puct":
        assert quarters.all()
    else:
        assert quarters.mean() < 0.1
    np.testing.assert_allclose(r.policy[: r.size][acted].sum(-1), 1.0, rtol=1e-5)


def test_a_short_run_learns_the_corridor():
    """1,000 steps on glasszero/Corridor-v0 (reward at the left end, episodes start mid-corridor):
    the untrained greedy search walks right, the trained one walks left, and the returns of
    self-play's last episodes say the same."""
    from agent.evaluation import evaluate
    sets = ["net.latent_dim=16", "net.hidden=[16]", "net.projection_hidden=16", "net.projection_dim=16",
            "net.projection_head_hidden=8", "search.num_simulations=8", "num_envs=4", "batch_size=32",
            "learning_starts=64", "replay_ratio=0.5", "lr=3e-3", "lr_warmup_steps=10", "discount=0.9",
            "td_steps=3", "unroll_steps=3", "net.value_support_size=10", "net.reward_support_size=3", "net.support_step=1.0",
            "target_update_interval=50"]
    agent = EZAgent("glasszero/Corridor-v0", resolve("glasszero/Corridor-v0", sets=sets), seed=1, device="cpu")

    def greedy_return():
        return evaluate(lambda obs: agent.predict(obs)[0], "glasszero/Corridor-v0", 0, 4).mean_return

    assert greedy_return() == 0.0
    agent.learn(1000)
    assert greedy_return() == 1.0 and agent.log_values()["rollout/ep_rew_mean"] > 0.8


# ------------------------------------------------------------------ terminal head


def _quit_chain_replay(rng, n=4, episodes=300, limit=5, p_quit=0.3):
    """Episodes on a chain of n cells: action 0 steps right (staying at the right end), action 1
    quits, which terminates the episode in the observation 'ended' (one-hot index n); an episode
    that never quits is truncated after `limit` steps, its final state a live cell."""
    eye = np.eye(n + 1, dtype=np.float32)
    replay = Replay(episodes * (limit + 1), (n + 1,), 2)
    for _ in range(episodes):
        state, prev = int(rng.integers(n)), np.array([-1])
        for _ in range(limit):
            a = int(rng.random() < p_quit)
            prev = replay.add(prev, eye[[state]], np.array([a]), np.array([float(a)]), np.full((1, 2), 0.5), 0)
            if a:
                replay.end_episodes(prev, eye[[n]], np.array([True]), 0)
                break
            state = min(state + 1, n - 1)
        else:
            replay.end_episodes(prev, eye[[state]], np.array([False]), 0)
    return replay, eye


def test_terminal_head_learns_which_actions_end_the_episode():
    """Trained through the learner on replay of a chain where one action ends the episode (and
    time limits truncate others), the head predicts an end for exactly the quitting action from
    every cell, and for whatever follows it (absorbing); truncated final states are not ends."""
    from agent.config import AgentConfig
    from agent.learner import Learner
    from nets import NetConfig, build_model
    from planners.objectives import Learned
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 4
    replay, eye = _quit_chain_replay(rng, n)
    net = NetConfig(latent_dim=32, hidden=(32,), projection_hidden=16, projection_dim=16,
                    projection_head_hidden=8, value_support_size=3, reward_support_size=2, terminal_head=True)
    config = AgentConfig(net=net, batch_size=64, unroll_steps=3, reanalyze_fraction=0.0, lr=3e-3,
                         lr_schedule="constant", lr_warmup_steps=1, discount=0.9, td_steps=3)
    model = build_model((n + 1,), 2, net, device="cpu")
    learner = Learner(model, config)
    truncated = replay.final & ~replay.terminal
    for step in range(300):
        batch = learner.make_batch(replay, Learned(0.9), rng, 0, beta=1.0)
        stats, _ = learner.train_step(batch)
        if step == 0:  # the targets: terminal finals and what follows them; never a truncated final
            index = replay.unroll(batch.index, 3, rng).index
            stored = index >= 0
            absorbing = batch.absorbing.numpy().astype(bool)
            slot = np.where(stored, index, 0) % replay.capacity
            assert (absorbing[stored] == replay.terminal[slot[stored]]).all()
            assert not absorbing[stored & truncated[slot]].any() and (stored & truncated[slot]).any()
            assert (batch.value_mask.numpy()[absorbing] == 1).all()
    assert "loss/terminal" in stats and stats["loss/terminal"] < 0.1, stats
    with torch.no_grad():
        cells = model.initial_inference(eye[:n])
        assert cells.terminal is None and not (cells.terminal_logit > 0).any()  # real states: never ended
        for a in (0, 1):
            nxt = model.recurrent_inference(cells.latent, torch.full((n,), a))
            assert nxt.terminal.tolist() == [a == 1] * n, (a, torch.sigmoid(nxt.terminal_logit))
            ended = model.recurrent_inference(cells.latent, torch.ones(n, dtype=torch.long))
            after = model.recurrent_inference(ended.latent, torch.full((n,), a))
            assert after.terminal.all(), (a, torch.sigmoid(after.terminal_logit))


def test_a_checkpoint_with_the_terminal_head_round_trips(tmp_path):
    agent = tiny_agent(extra=["net.terminal_head=true", "terminal_loss_weight=0.5"])
    path = agent.save(tmp_path / "model.pt")
    loaded = EZAgent.load(path, device="cpu")
    assert loaded.config.net.terminal_head and loaded.config.terminal_loss_weight == 0.5
    with torch.no_grad():
        a, b = agent.model.initial_inference(FIXED_OBS), loaded.model.initial_inference(FIXED_OBS)
    assert b.terminal_logit is not None and torch.equal(a.terminal_logit, b.terminal_logit)
    with torch.no_grad():
        step = [m.model.recurrent_inference(r.latent, torch.tensor([0, 1, 1])) for m, r in ((agent, a), (loaded, b))]
    assert torch.equal(step[0].terminal, step[1].terminal)
    np.testing.assert_array_equal(agent.predict(FIXED_OBS)[0], loaded.predict(FIXED_OBS)[0])


def test_batched_reanalyze_trains_every_due_step_on_batches_reanalyzed_together(trained):
    agent, _ = trained
    batches = agent.learner.make_batches(agent.replay, agent.objective, np.random.default_rng(3),
                                         agent.num_timesteps, 1.0, 3)
    stored = agent.replay.policy
    for batch in batches:  # each batch's fresh share differs from what self-play stored
        acted = batch.policy_mask.numpy().astype(bool)
        slots = batch.index % agent.replay.capacity
        fresh = batch.target_policy.numpy()[:16, 0][acted[:16, 0]]
        assert not np.allclose(fresh, stored[slots[:16]][acted[:16, 0]])
    one = tiny_agent(seed=4, extra=["batched_reanalyze=true"])
    other = tiny_agent(seed=4)
    one.learn(160), other.learn(160)
    assert one.learner.train_steps == other.learner.train_steps > 0


def test_a_reanalyzed_policy_is_reused_until_the_target_network_or_the_objective_changes():
    """A state sampled again under the same target network takes the policy its search gave
    (not searched again); after the next target copy, or a swapped objective, it is searched.
    Off (the default), every sample is searched."""
    agent = tiny_agent(seed=6, extra=["reuse_reanalysis=true"])
    agent.learn(200, progress_bar=False)
    learner, replay = agent.learner, agent.replay
    replay.forget_reanalyzed()

    def draft():  # the same sample every time
        return learner.draft(replay, agent.objective, np.random.default_rng(0), agent.num_timesteps, 1.0)

    first = draft()
    assert first.search.any() and (first.search == first.redo).all()
    index = first.unroll.index[first.search]
    marks = np.zeros((len(index), agent.num_actions), np.float32)
    marks[:, 0] = index  # each state's policy names it
    first.fill(marks)
    learner.finish(replay, first)
    assert learner.reanalysis_reused == 0.0  # logged as train/reanalysis_reused
    again = draft()
    assert not again.search.any() and again.redo.any()
    np.testing.assert_array_equal(again.policy[again.redo][:, 0], again.unroll.index[again.redo])
    learner.finish(replay, again)
    assert learner.reanalysis_reused == 1.0

    def searched(d):  # fill a draft's searches and finish it
        d.fill(np.full((int(d.search.sum()), agent.num_actions), 0.5, np.float32))
        learner.finish(replay, d)

    # Kept under the version a batch was drafted with: a copy before it finishes keeps none current.
    replay.forget_reanalyzed()
    stale = draft()
    learner.target_version += 1
    searched(stale)
    assert (draft().search == stale.redo).all()
    # A batch drafted before its objective was swapped (the distributed loop drafts ahead) keeps nothing.
    late = draft()
    replay.forget_reanalyzed()
    searched(late)
    assert (draft().search == late.redo).all()

    learner.train_steps = agent.config.target_update_interval - 1  # the next step copies the target
    learner.train_step(learner.finish(replay, draft()))
    assert learner.target_version == agent.config.target_update_interval
    after_copy = draft()
    assert (after_copy.search == after_copy.redo).all()
    after_copy.fill(marks)
    learner.finish(replay, after_copy)
    assert not draft().search.any()
    agent.set_objective("learned")
    assert (draft().search == after_copy.redo).all()
    searched(draft())
    assert not draft().search.any()
    agent.config.reuse_reanalysis = False  # what is kept stays unused
    assert (draft().search == after_copy.redo).all()


def test_kept_reanalyzed_policies_are_dropped_when_the_search_settings_change():
    agent = tiny_agent(seed=6, extra=["reuse_reanalysis=true"])
    agent.learn(200, progress_bar=False)

    def kept():
        return int((agent.replay.reanalyzed_at >= 0).sum())

    assert kept() > 0
    agent.apply_resume_settings({"lr": 2e-3})  # not a search setting
    assert kept() > 0
    agent.apply_resume_settings({"search.num_simulations": 6})
    assert kept() == 0
    agent.learn(40, progress_bar=False)
    assert kept() > 0
    agent.set_prior("uniform")
    assert kept() == 0


def test_reanalysis_searches_whose_targets_are_kept_add_no_root_noise(trained, monkeypatch):
    """Searches whose targets are kept run without root noise (two searches of the same roots then
    agree); EfficientZero's per-sample searches keep it: without reuse, and under an objective
    whose targets are not kept (anything but the learned one)."""
    import agent.reanalyze as reanalyze_module
    from agent.reanalyze import reanalyze_policies
    from planners.objectives import objective_from_spec
    import dataclasses
    agent, _ = trained
    roots = agent.replay.observations(np.arange(64))
    # pUCT's visit targets move with its root noise. Gumbel's improved-policy targets need not: with
    # CartPole's 2 actions both are always considered, so its noise only orders them.
    puct = dataclasses.replace(agent.config.search, algorithm="puct")

    def search(seed, reuse):
        return reanalyze_policies(agent.learner.target_model, agent.objective, puct, roots,
                                  np.random.default_rng(seed), reuse)

    np.testing.assert_array_equal(search(1, reuse=True), search(2, reuse=True))
    assert not np.array_equal(search(1, reuse=False), search(2, reuse=False))

    noise = []
    plan = reanalyze_module.plan

    def spy(*args, **kwargs):
        noise.append(kwargs["add_noise"])
        return plan(*args, **kwargs)

    monkeypatch.setattr(reanalyze_module, "plan", spy)

    def batch(objective):
        agent.replay.forget_reanalyzed()
        agent.learner.make_batch(agent.replay, objective, np.random.default_rng(0), agent.num_timesteps, 1.0)

    assert agent.config.reuse_reanalysis  # CartPole's preset
    batch(agent.objective)
    batch(objective_from_spec("reward-only:3", agent.config.discount, agent.objective_context()))
    monkeypatch.setattr(agent.config, "reuse_reanalysis", False)
    batch(agent.objective)
    assert noise == [False, True, True]
    agent.replay.forget_reanalyzed()


def test_the_default_decoder_is_a_probe_that_changes_no_other_weight_and_accepts_value_functions(tmp_path):
    """The decoder is on by default (vector observations) and reads detached latents: the core
    networks train to exactly the weights they reach without it, and the checkpoint accepts an
    objective over predicted observations (`eval --value`) with no retraining."""
    from agent.cli import main

    def trained(**overrides):
        agent = EZAgent("glasszero/Corridor-v0", {"replay_capacity": 2000, **overrides}, seed=0, device="cpu")
        return agent.learn(700)

    with_decoder, without = trained(), trained(**{"net.use_decoder": False})
    assert with_decoder.model.has_decoder and not without.model.has_decoder
    assert with_decoder._last_stats["loss/reconstruction"] > 0  # the probe did train
    core = without.model.state_dict()
    probe = with_decoder.model.state_dict()
    assert all(torch.equal(core[k], probe[k]) for k in core)
    path = with_decoder.save(tmp_path / "model.pt")
    assert main(["eval", "--checkpoint", str(path), "--episodes", "2",
                 "--value", "tests.test_objective_swap:prefer_right"]) == 0


def test_greedy_q_bootstrap_takes_the_online_networks_choice_at_the_target_networks_price():
    """value_bootstrap="greedy-q": max_a r(s, a) + discount * V(s') one model step ahead, the action
    chosen by one network and priced by the other (Double DQN), checked action by action."""
    from agent.learner import greedy_q_values, one_step_q
    online, target = tiny_agent(seed=0).model, tiny_agent(seed=1).model  # two different networks
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(256, 4)), dtype=torch.float32)
    discount = 0.9

    def q(model):  # [B, A], one recurrent call per action
        with torch.no_grad():
            root = model.initial_inference(obs)
            cols = []
            for a in range(2):
                nxt = model.recurrent_inference(root.latent, torch.full((len(obs),), a))
                cols.append(nxt.reward + discount * nxt.value)
            return torch.stack(cols, -1).numpy()

    chosen, priced = q(online).argmax(-1), q(target)
    assert (chosen != priced.argmax(-1)).any()  # rows where the two networks disagree
    got = greedy_q_values(online, target, obs, discount, inference="torch")
    np.testing.assert_allclose(got, priced[np.arange(len(obs)), chosen], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(greedy_q_values(target, target, obs, discount, inference="torch"), priced.max(-1),
                               rtol=1e-5, atol=1e-5)
    # The compiled forward (the default) gives the same one-step values, its supports decoded in
    # float64 where torch's float32 decoding rounds by up to 1e-3 (tests/test_compiled.py).
    np.testing.assert_allclose(one_step_q(target, obs, discount), priced, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("bootstrap", ["value", "greedy-q"])
def test_value_targets_bootstrap_from_the_configured_estimate(bootstrap, monkeypatch):
    """The learner's n-step targets add the estimate value_bootstrap names at s_{t+h}, and only it;
    greedy-q chooses with the online network and prices with the target network."""
    import agent.learner as learner_module
    agent = tiny_agent(extra=[f"value_bootstrap={bootstrap}"])
    agent.learn(100, progress_bar=False)
    calls = []

    def big(*args):
        calls.append(args)
        return np.full(len(args[2] if bootstrap == "greedy-q" else args[1]), 1e4)

    def refused(*args):
        raise AssertionError("the other bootstrap was asked")

    used, other = ("root_values", "greedy_q_values") if bootstrap == "value" else ("greedy_q_values", "root_values")
    monkeypatch.setattr(learner_module, used, big)
    monkeypatch.setattr(learner_module, other, refused)
    batch = agent.learner.make_batch(agent.replay, agent.objective, np.random.default_rng(0),
                                     agent.num_timesteps, beta=1.0)
    assert batch.target_value.max() > 1e3  # the bootstrapped targets carry the patched estimate
    if bootstrap == "greedy-q":
        select, price, _, discount = calls[0][:4]
        assert select is agent.learner.model and price is agent.learner.target_model
        assert discount == agent.config.discount
    else:
        assert calls[0][0] is agent.learner.target_model


def test_an_unknown_value_bootstrap_is_refused_by_name():
    with pytest.raises(ValueError, match="value_bootstrap must be one of"):
        tiny_agent(extra=["value_bootstrap=search"])


def test_one_step_q_zeroes_the_value_past_a_predicted_end_on_both_forwards():
    """On a model with a terminal head the compiled and torch one-step values agree, and a next
    state the head calls terminal is worth its reward alone."""
    from agent.learner import one_step_q
    agent = EZAgent("glasszero/Corridor-v0", {"replay_capacity": 1000}, seed=0, device="cpu")
    model = agent.model
    obs = np.random.default_rng(0).uniform(0.0, 1.0, size=(64, *agent.obs_shape)).astype(np.float32)
    with torch.no_grad():  # a terminal head that calls every next state terminal
        model.prediction.terminal[-1].bias.fill_(50.0)
    torch_q = one_step_q(model, obs, 0.9, inference="torch")
    np.testing.assert_allclose(one_step_q(model, obs, 0.9), torch_q, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(torch_q, one_step_q(model, obs, 0.0, inference="torch"), rtol=1e-6, atol=1e-6)
