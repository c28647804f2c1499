"""The planner's observation history (AgentConfig.observation_history): the agent's envs stack its
last N observations after the run's own wrappers, in self-play, evaluation, checkpoints reloaded and
commands run on another environment; baselines on the same env are untouched."""
import json

import numpy as np
import pytest
import torch

from agent.algorithms import make_agent
from agent.cli import main as cli_main
from agent.cli.env_flags import resolve_env
from agent.config import resolve_config as resolve
from agent.evaluation import evaluate
from agent.ez import EZAgent
from tests.test_agent_ez import TINY
from tests.test_env_flags import SCALE3, _args

STACK3 = "gymnasium.wrappers:FrameStackObservation(stack_size=3)"


def test_the_agent_reads_stacks_trains_on_them_and_reloads_them_once(tmp_path):
    agent = EZAgent("CartPole-v1", resolve("CartPole-v1", sets=[*TINY, "observation_history=3"]), device="cpu")
    assert agent.wrappers == [] and agent.env_wrappers() == [STACK3]
    assert agent.obs_shape == (3, 4) and agent.frame_stack == 3
    agent.learn(96, progress_bar=False)
    assert agent.replay.frame_stack == 3 and agent.get_env().single_observation_space.shape == (3, 4)
    agent.save(tmp_path / "model.pt")
    loaded = EZAgent.load(tmp_path / "model.pt", device="cpu")
    assert loaded.wrappers == [] and loaded.env_wrappers() == [STACK3] and loaded.obs_shape == (3, 4)
    act = lambda a: (lambda obs: a.predict(obs)[0])  # noqa: E731
    ours, theirs = (evaluate(act(a), "CartPole-v1", 0, 2, wrappers=a.env_wrappers()) for a in (agent, loaded))
    assert ours.returns.tolist() == theirs.returns.tolist()


def test_a_run_evaluates_in_stacks_and_its_commands_add_wrappers_under_the_stack(tmp_path, capsys):
    sets = [x for s in [*TINY, "observation_history=3", "learning_starts=32"] for x in ("--set", s)]
    assert cli_main(["--steps", "64", "--eval-interval", "64", "--eval-episodes", "2", "--logdir", str(tmp_path),
                     "--no-progress", "--audit-episodes", "1", *sets]) == 0
    run = tmp_path / "ez_CartPole-v1_s0"
    agent = EZAgent.load(run / "model.pt", device="cpu")
    expected = evaluate(lambda obs: agent.predict(obs)[0], "CartPole-v1", 0, 2, wrappers=[STACK3])
    last = (run / "evaluations.csv").read_text().strip().splitlines()[-1].split(",")
    assert float(last[2]) == pytest.approx(float(expected.mean_return), abs=1e-4)
    capsys.readouterr()
    assert resolve_env(agent, _args("--wrapper", SCALE3)).wrappers == [SCALE3, STACK3]  # the model still reads stacks
    agent.wrappers = ["tests.test_env_flags:ScaleReward(scale=1.0)"]  # as if trained with a wrapper of its own
    assert resolve_env(agent, _args("--wrapper", SCALE3)).wrappers == [*agent.wrappers, SCALE3, STACK3]
    assert resolve_env(agent, _args("--wrapper", SCALE3, "--replace-wrappers")).wrappers == [SCALE3, STACK3]
    agent.wrappers = []
    assert cli_main(["eval", "--checkpoint", str(run / "model.pt"), "--episodes", "2", "--wrapper", SCALE3,
                     "--json"]) == 0
    scaled = json.loads(capsys.readouterr().out)
    assert scaled["returns"] == pytest.approx([3 * r for r in expected.returns])
    assert cli_main(["--steps", "96", "--logdir", str(tmp_path), "--resume", str(run), "--no-progress",
                     "--set", "observation_history=1"]) == 2
    assert "cannot change observation_history" in capsys.readouterr().err


def test_lunarlanders_preset_stacks_eight_observations_and_its_baselines_see_one():
    pytest.importorskip("Box2D")
    assert EZAgent("LunarLander-v3", device="cpu").obs_shape == (8, 8)
    ppo = make_agent("ppo", "LunarLander-v3")
    assert ppo.env_wrappers() == [] and ppo.get_env().observation_space.shape == (8,)
    assert EZAgent("LunarLander-v3", {"observation_history": 1}, device="cpu").obs_shape == (8,)


def test_an_observation_history_below_one_or_over_a_stack_is_refused_by_name():
    with pytest.raises(ValueError, match="observation_history must be >= 1, got 0"):
        resolve("CartPole-v1", sets=["observation_history=0"])
    with pytest.raises(ValueError, match="already stacks.*--set observation_history=1"):
        EZAgent("CartPole-v1", {"observation_history": 2}, device="cpu", wrappers=[STACK3])
    assert resolve("CartPole-v1").observation_history == 1


def test_a_history_trains_exactly_as_the_same_stack_given_as_a_wrapper():
    # Runs screened with `--wrapper FrameStackObservation(...)` are the preset's runs.
    history = EZAgent("CartPole-v1", resolve("CartPole-v1", sets=[*TINY, "observation_history=3"]), device="cpu")
    wrapped = EZAgent("CartPole-v1", resolve("CartPole-v1", sets=TINY), device="cpu", wrappers=[STACK3])
    for agent in (history, wrapped):
        agent.learn(160, progress_bar=False)
    ours, theirs = history.model.state_dict(), wrapped.model.state_dict()
    assert history.learner.train_steps > 0 and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_transfer_study_hands_each_acting_agent_its_stacks_over_the_tasks_reward(tmp_path):
    from types import SimpleNamespace

    from agent.studies.transfer import TransferRun
    from agent.studies.transfer_suite import SUITE
    o = next(x for x in SUITE if x.env == "CartPole-v1")
    study = TransferRun(tmp_path, episodes=2, write=lambda line: None)
    seen = []

    def act(obs):
        seen.append(obs.shape[1:])
        return np.zeros(len(obs), np.int64)

    agent = SimpleNamespace(env_wrappers=lambda wrappers: [*wrappers, STACK3])
    mean, _ = study._evaluate(act, o, agent=agent)
    assert set(seen) == {(3, 4)}  # the agent's stacks, with the task's reward read on one observation
    expected = evaluate(act, "CartPole-v1", 0, 2, wrappers=[o.wrapper, STACK3])
    assert mean == pytest.approx(expected.mean_return)
    seen.clear()
    study._evaluate(act, o)  # a random policy: the task's env alone
    assert set(seen) == {(4,)}


def test_a_run_with_a_history_stopped_and_resumed_equals_one_that_never_stopped(tmp_path):
    # The stacks of the open episodes are saved as data (envs/snapshot.py), so they continue.
    from tests.test_reliability import stopped_and_resumed
    straight, _ = stopped_and_resumed(tmp_path, extra=["observation_history=3"])
    assert straight.frame_stack == 3


def test_misgen_measures_an_agent_in_its_own_stacks(tmp_path):
    from agent.studies.misgen import run_misgen
    results = run_misgen("glasszero/CornerGoal-v0", ["ez"], [0], 64, tmp_path, episodes=2, swap=False,
                         ez_overrides={"observation_history": 2, "search.num_simulations": 2}, progress_bar=False,
                         write=lambda line: None)
    assert {(r.split, r.episodes) for r in results} == {("test", 2), ("train", 2)}
