"""train.py --workers N: self-play on Ray actors, the learner and replay in the driver
(agent/distributed/). The tests that need Ray share one simulated two-node cluster (a head with
one CPU, a worker node with two) and are skipped when Ray is not installed; the flag checks run
without it."""
import signal
import sys

import numpy as np
import pytest
from stable_baselines3.common.callbacks import BaseCallback

from agent.callbacks import EVALUATIONS_FILE
from agent.cli import main as cli_main
from agent.distributed import DistributedOptions, learn_distributed
from agent.ez import EZAgent
from agent.runner import RESULT_FILE, TrainingInterrupted, train_run
from tests.test_agent_ez import TINY, tiny_agent

STEPS = 400
RUN = dict(eval_interval=200, eval_episodes=1, progress_bar=False, verbose=False, checkpoint_interval=None,
           checkpoint_seconds=None, audit_episodes=0, device="cpu")
OVERRIDES = {k: v for k, v in (s.split("=") for s in TINY)}


def _overrides() -> dict:
    import yaml
    return {k: yaml.safe_load(v) for k, v in OVERRIDES.items()}


# ---------------------------------------------------------------------------- without Ray
def test_workers_without_ray_installed_name_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert cli_main(["--workers", "1", "--steps", "100", "--logdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--workers" in err and 'pip install -e ".[ray]"' in err
    assert not list(tmp_path.iterdir())  # refused before the run directory was made


@pytest.mark.parametrize("flags, message", [
    (["--workers", "-1"], "--workers must be >= 0"),
    (["--reanalyze-workers", "-2", "--workers", "1"], "--reanalyze-workers must be >= 0"),
    (["--weight-sync-interval", "0", "--workers", "1"], "--weight-sync-interval must be >= 1"),
    (["--reanalyze-workers", "1"], "needs --workers >= 1"),
    (["--ray-address", "auto"], "needs --workers >= 1"),
])
def test_bad_distributed_flags_are_refused_by_name(flags, message, tmp_path, capsys):
    assert cli_main([*flags, "--steps", "100", "--logdir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_a_baseline_cannot_scale_out(tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(ValueError, match="--workers runs the planner agent"):
        train_run("ppo", "CartPole-v1", 0, 100, tmp_path, workers=1, **RUN)


# ---------------------------------------------------------------------------- on a simulated cluster
@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=2)
    yield c
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


@pytest.fixture
def connected(cluster):
    import ray
    if not ray.is_initialized():
        ray.init(address=cluster.address, log_to_driver=False)
    return ray


def test_a_single_process_run_resumes_on_a_multi_node_cluster(cluster, tmp_path):
    import ray
    if ray.is_initialized():  # this test joins by address itself
        ray.shutdown()
    first = train_run("ez", "CartPole-v1", 0, 200, tmp_path, config_overrides=_overrides(), **RUN)
    summary = train_run("ez", "CartPole-v1", 0, STEPS, tmp_path, resume=str(first.run_dir / "resume.pt"),
                        workers=2, ray_address=cluster.address, **RUN)
    assert summary.env_steps == STEPS
    assert summary.config["distributed"]["workers"] == 2
    assert not ray.is_initialized()  # the run disconnected from the cluster it joined


@pytest.fixture
def actor_handles(monkeypatch):
    """The self-play actors the distributed loop makes, as they are made."""
    from agent.distributed import loop
    handles = []
    make = loop._Loop._make

    def recording_make(self, cls, count, offset):
        made = make(self, cls, count, offset)
        if cls is loop.SelfPlayActor:
            handles.extend(made)
        return made

    monkeypatch.setattr(loop._Loop, "_make", recording_make)
    return handles


def test_ctrl_c_then_a_distributed_run_with_the_usual_files_then_single_process(connected, actor_handles, tmp_path,
                                                                              monkeypatch):
    from agent.callbacks import LogCallback
    log_step, sent = LogCallback._on_step, []

    def ctrl_c_at_200(self):
        if self.num_timesteps >= 200 and not sent:
            sent.append(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C sends; StopOnSignal takes it
        return log_step(self)

    with monkeypatch.context() as m:
        m.setattr(LogCallback, "_on_step", ctrl_c_at_200)
        with pytest.raises(TrainingInterrupted):
            train_run("ez", "CartPole-v1", 0, STEPS, tmp_path, config_overrides=_overrides(), workers=2, **RUN)
    run_dir = next(tmp_path.iterdir())
    stopped = EZAgent.load(run_dir / "resume.pt", device="cpu")  # intact
    assert 200 <= stopped.num_timesteps < STEPS and not (run_dir / RESULT_FILE).exists()
    import ray
    assert len(actor_handles) == 2
    for actor in actor_handles:  # every actor is gone
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.run.remote(1, 0.0, 0, []), timeout=30)

    summary = train_run("ez", "CartPole-v1", 0, STEPS, tmp_path, resume=str(run_dir / "resume.pt"), workers=2,
                        reanalyze_workers=1, **RUN)
    for name in ("model.pt", "resume.pt", RESULT_FILE, EVALUATIONS_FILE, "config.yaml"):
        assert (run_dir / name).exists(), name
    assert summary.env_steps == STEPS and summary.history[-1].env_steps == STEPS
    agent = EZAgent.load(run_dir / "resume.pt", device="cpu")
    c = agent.config  # replay_ratio training steps per env step, from learning_starts on, as single-process
    assert agent.learner.train_steps == ((STEPS - c.learning_starts) // c.num_envs + 1) * c.num_envs * c.replay_ratio

    # ... and the single-process loop continues it, closing the actors' open episodes.
    more = train_run("ez", "CartPole-v1", 0, STEPS + 200, tmp_path, resume=str(run_dir / "resume.pt"), **RUN)
    assert more.env_steps == STEPS + 200
    r = EZAgent.load(run_dir / "resume.pt", device="cpu").replay
    nxt = r.next[: r.size]
    assert ((nxt < 0) | (nxt > np.arange(r.size))).all()  # every link points forward


class _KillOnce(BaseCallback):
    """Kills one self-play actor (Ray restarts it) once the run passes `at` env steps."""

    def __init__(self, at, handles):
        super().__init__()
        self.at, self.handles, self.killed = at, handles, False

    def _on_step(self) -> bool:
        import ray
        if not self.killed and self.num_timesteps >= self.at:
            ray.kill(self.handles[0], no_restart=False)
            self.killed = True
        return True


def test_a_killed_actor_is_restarted_and_the_run_reaches_its_step_count(connected, actor_handles):
    agent = tiny_agent(seed=3)
    killer = _KillOnce(120, actor_handles)
    learn_distributed(agent, 300, [killer], False, DistributedOptions(workers=2))
    assert killer.killed
    assert agent.num_timesteps == 300
    r = agent.replay
    # Every link points forward to a written entry: the killed worker's episodes were closed, not
    # continued by the restarted actor's fresh ones.
    nxt = r.next[: r.size]
    assert ((nxt < 0) | (nxt > np.arange(r.size))).all()


class _MarkingReanalyzer:
    """Stands in for a reanalyze actor: records the roots it is sent and answers, for each, a row
    that marks it (its first observation entry, then zeros), and `idle` seconds it waited."""

    def __init__(self, num_actions, idle):
        self.sent, self.num_actions, self.idle = [], num_actions, idle
        self.reanalyze = self  # actor.reanalyze.remote(...)

    def remote(self, version, box, roots):
        import ray
        self.sent.append(roots.copy())
        marks = np.zeros((len(roots), self.num_actions))
        marks[:, 0] = roots.reshape(len(roots), -1)[:, 0]
        return ray.put((marks, self.idle))


def test_the_learner_searches_its_share_of_the_roots_and_the_actors_the_rest_in_root_order(connected, monkeypatch):
    """Several batches to one actor call, each batch's part of the answer back at its own roots;
    and the share balanced: an actor that sat idle before the call gets less of the next batches."""
    from agent.distributed.loop import CALL_BATCHES, SHARE_STEP, RemoteReanalysis
    assert CALL_BATCHES >= 2  # the slicing below is what this test is for
    # The learner's wait for the (ready) answer is measured: on a loaded machine it passed the 1 ms
    # that counts as waiting. 50 ms still tells it from the actor's 100 ms idle.
    monkeypatch.setattr("agent.distributed.loop.IDLE_S", 0.05)
    agent = tiny_agent(seed=5)
    agent.learn(200, progress_bar=False)
    agent.replay.forget_reanalyzed()  # every batch then has roots to search, whatever replay has kept
    finished = []
    finish = agent.learner.finish
    agent.learner.finish = lambda replay, d: finished.append((d.roots, d.policy[d.search].copy())) or finish(replay, d)
    actor = _MarkingReanalyzer(agent.num_actions, idle=0.1)
    reanalysis = RemoteReanalysis(agent, [actor])
    reanalysis.local_share = 0.5
    for _ in range(CALL_BATCHES):
        reanalysis.next_batch(beta=1.0)
    sent = actor.sent[0]  # the first call: the first CALL_BATCHES batches' remote roots, in order
    offset = 0
    for roots, policies in finished:
        local = int(round(0.5 * len(roots)))
        assert 0 < local < len(roots)
        remote = roots[local:]
        np.testing.assert_array_equal(sent[offset:offset + len(remote)], remote)
        offset += len(remote)
        # The actor's rows carry their marks, at their roots' places; the learner's rows are
        # searched policy targets (distributions).
        np.testing.assert_array_equal(policies[local:, 0], remote.reshape(len(remote), -1)[:, 0])
        assert (policies[local:, 1:] == 0).all()
        np.testing.assert_allclose(policies[:local].sum(-1), 1.0, rtol=1e-6)
    assert offset == len(sent)
    # Balanced once per call: the actor had been idle, so the learner's share went down one step;
    # with neither side waiting it stays; a learner that waits takes more.
    assert reanalysis.local_share == pytest.approx(0.5 - SHARE_STEP)
    reanalysis._balance(learner_waited=0.0, actor_idle=0.0)
    assert reanalysis.local_share == pytest.approx(0.5 - SHARE_STEP)
    reanalysis._balance(learner_waited=0.06, actor_idle=0.0)
    assert reanalysis.local_share == pytest.approx(0.5)


def test_the_balanced_share_survives_a_resume(tmp_path):
    pytest.importorskip("ray")
    from agent.distributed.loop import SHARE_STEP, RemoteReanalysis
    agent = tiny_agent(seed=6)
    agent.learn(100, progress_bar=False)
    reanalysis = RemoteReanalysis(agent, [])
    for _ in range(3):
        reanalysis._balance(learner_waited=0.01, actor_idle=0.0)
    agent.save_resume(tmp_path / "resume.pt")
    resumed = EZAgent.load(tmp_path / "resume.pt", device="cpu")
    assert RemoteReanalysis(resumed, []).local_share == pytest.approx(3 * SHARE_STEP)


def test_an_actor_loads_the_published_weights_exactly(connected):
    """What the learner publishes (numpy arrays in the object store) is what an actor then acts
    with: every weight equal, the objective and search settings with them."""
    import ray
    import torch

    from agent.distributed.actors import _PolicyHolder, agent_spec, policy_snapshot
    agent = tiny_agent(seed=6)
    agent.learn(150, progress_bar=False)
    holder = _PolicyHolder(agent_spec(agent))
    holder.sync(1, [ray.put(policy_snapshot(agent.model, agent))])
    mine, theirs = agent.model.state_dict(), holder.agent.model.state_dict()
    assert set(mine) == set(theirs)
    for name in mine:
        assert torch.equal(mine[name], theirs[name]), name
    assert holder.agent.objective.describe() == agent.objective.describe() and holder.version == 1
    with torch.no_grad():  # loaded into the actor's own parameters, not shared with the learner's
        next(agent.model.parameters()).add_(1.0)
    assert not torch.equal(next(agent.model.parameters()), next(holder.agent.model.parameters()))


def test_visit_counts_cover_every_workers_steps_and_go_on_through_resumes(connected, monkeypatch, tmp_path):
    """The driver counts what every actor acted in (agent/distributed/writer.py): a run that went
    single-process, then distributed, then was saved holds one count per environment step."""
    monkeypatch.setattr("agent.explore.FREEZE_AFTER", 64)  # the driver's counts (the actors keep their own)
    agent = tiny_agent(seed=4, extra=["explore_fraction=0.5", "explore_family=visit-count"])
    agent.learn(100, progress_bar=False)
    learn_distributed(agent, 100, [], False, DistributedOptions(workers=2))
    agent.save_resume(tmp_path / "resume.pt")
    counts = EZAgent.load(tmp_path / "resume.pt", device="cpu")._saved_selfplay["explorers"]
    assert agent.num_timesteps == 200
    assert int(counts["visits"].sum()) + len(counts["early"]) == 200
    bonus = agent.replay.aux_reward[: agent.replay.size, 0][~agent.replay.final[: agent.replay.size]]
    # The writer's counts, whose widths are fixed (64 above): the actors, in processes of their own,
    # fix theirs only at agent.explore's 1,000 observations and would have stored 0.
    assert (bonus[-100:] > 0).all()
