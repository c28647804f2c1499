"""The transfer suite's parts: tasks (envs/tasks.py), refit (agent/refit.py), scoring and the
`train.py transfer` / `train.py refit` commands."""
import json
import shutil

import numpy as np
import pytest
import torch

import envs
from agent.cli import main
from agent.ez import EZAgent
from agent.refit import refit, replay_transitions
from agent.runner import train_run
from agent.studies.transfer import Measurement, choose_prior, score
from agent.studies.transfer_suite import SUITE, TRAIN_OVERRIDES, SuiteObjective, select
from common.imports import load_callable
from planners.plugins import takes_root

CORRIDOR = "glasszero/Corridor-v0"


def _walk(env, action, limit=30):
    total, info, steps = 0.0, {}, 0
    for steps in range(1, limit + 1):
        _, r, term, trunc, info = env.step(action)
        total += r
        if term or trunc:
            return total, term, info, steps
    return total, False, info, steps


def test_task_wrapper_pays_the_task_reward_and_ends_at_the_target():
    env = envs.make("glasszero/CorridorTest-v0", wrappers=["envs.tasks:TaskReward(name='corridor-cell', cell=5)"])
    for seed in range(6):
        env.reset(seed=seed)
        start = env.unwrapped.position
        total, term, info, steps = _walk(env, 1)  # always right
        if start < 5:  # reaching cell 5 pays 1 and ends the episode there
            assert (term, total, info["task_success"], steps, env.unwrapped.position) == (True, 1.0, True, 5 - start, 5)
        else:  # from cell 5, right is the env's own end (cell 6): no task reward
            assert (term, total, info["task_success"]) == (True, 0.0, False)
    env.reset(seed=0)
    total, term, info, _ = _walk(env, 0)  # always left: the env's own end, no task reward
    assert term and total == 0.0 and not info["task_success"]


def test_cartpole_task_rewards_the_distance_to_its_target():
    env = envs.make("CartPole-v1", wrappers=["envs.tasks:TaskReward(name='cartpole-at', x=1.0)"])
    obs, _ = env.reset(seed=0)
    _, r, *_ = env.step(0)
    x = float(env.unwrapped.state[0])
    assert r == pytest.approx(1.0 - 0.5 * min(abs(x - 1.0), 1.0), abs=1e-6)


def test_factory_strings_build_functions_with_their_literal_arguments():
    value = load_callable("envs.tasks:value_fn(name='corridor-cell', cell=6)")
    obs = np.zeros((2, 8), np.float32)
    obs[:, 0] = [-1.0, 1.0]
    np.testing.assert_allclose(value(obs), [-2.0, 0.0])
    assert takes_root(load_callable("envs.tasks:value_fn(name='observed-goal')"))
    with pytest.raises(ValueError, match="literal"):
        load_callable("envs.tasks:value_fn(name=open('x'))")
    with pytest.raises(ValueError, match="could not be built.*unknown task"):
        load_callable("envs.tasks:value_fn(name='nope')")


def test_the_suite_declares_its_splits_and_refuses_unknown_selections():
    assert len(SUITE) >= 10 and len({o.base_env for o in SUITE}) >= 3
    assert {o.split for o in SUITE} == {"dev", "eval"}
    assert all(o.split == "dev" for o in select(SUITE, split="dev"))
    with pytest.raises(ValueError, match="--envs"):
        select(SUITE, ["Pong-v5"])
    with pytest.raises(ValueError, match="split"):
        SuiteObjective("x", CORRIDOR, CORRIDOR, "corridor-cell", {"cell": 1}, "test")


def test_scores_are_relative_to_random_and_undefined_without_a_working_oracle():
    assert score(0.75, 0.5, 1.0) == pytest.approx(50.0)
    assert np.isnan(score(0.75, 0.5, 0.5))
    assert np.isnan(score(50.0, 1.46, 1.61))  # an oracle that did not learn the task is no reference


def test_the_prior_after_a_swap_is_chosen_on_dev_objectives_only():
    dev = SuiteObjective("d", CORRIDOR, CORRIDOR, "corridor-cell", {"cell": 6}, "dev")
    ev = SuiteObjective("e", CORRIDOR, CORRIDOR, "corridor-cell", {"cell": 2}, "eval")
    rows = []
    for o, good in ((dev, "uniform"), (ev, "learned")):  # the eval objective prefers the other prior
        rows += [Measurement(o.name, o.env, o.split, "random", "", 0.0, 0.0),
                 Measurement(o.name, o.env, o.split, "oracle_ez", "", 1.0, 1.0, 10.0)]
        for prior in ("learned", "uniform"):
            r = 1.0 if prior == good else 0.0
            rows += [Measurement(o.name, o.env, o.split, m, prior, r, r) for m in ("zero_shot", "refit")]
    for method in ("zero_shot", "refit"):
        prior, medians = choose_prior(rows, [dev, ev], ("learned", "uniform"), method)
        assert prior == "uniform" and medians == {"learned": 0.0, "uniform": 100.0}
    # A tie on the dev objectives goes to the setting listed first, whatever the eval rows say.
    tied = [m for m in rows if m.objective == "e" or m.method in ("random", "oracle_ez")] + [
        Measurement("d", dev.env, "dev", "zero_shot", p, 1.0, 1.0) for p in ("learned", "uniform")]
    assert choose_prior(tied, [dev, ev], ("uniform", "learned"))[0] == "uniform"
    assert choose_prior(tied, [dev, ev], ("learned", "uniform"))[0] == "learned"


@pytest.fixture(scope="module")
def corridor_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("corridor")
    summary = train_run("ez", CORRIDOR, 0, 300, logdir, eval_interval=300, eval_episodes=2,
                        config_overrides=dict(TRAIN_OVERRIDES), progress_bar=False, verbose=False)
    return summary.run_dir


def test_refit_fits_the_new_reward_from_replay_and_round_trips_a_checkpoint(corridor_run, tmp_path):
    agent = EZAgent.load(corridor_run / "resume.pt")
    steps_before = agent.num_timesteps
    reward = "envs.tasks:task(name='corridor-cell', cell=4)"
    report = refit(agent, reward, name="right", steps=1500)  # 4 rewards in replay: unweighted classes need the steps
    assert agent.num_timesteps == steps_before  # no environment steps
    obs, action, r, next_obs, term = replay_transitions(agent.replay)
    assert report.transitions == len(action) > 100
    target = load_callable(reward)(obs, action, r, next_obs, term)
    assert target.sum() > 0 and report.reward_mse < 0.05 * max(target.var(), 1e-3) + 1e-3
    assert report.end_accuracy > 0.9
    assert agent.objective.to_spec() == {"name": "refit", "head": "right", "discount": agent.config.discount}
    from planners.config import PRIOR_OWN_PRIOR
    assert agent.config.search.prior == PRIOR_OWN_PRIOR  # chosen on the suite's dev objectives
    path = agent.save(tmp_path / "refit.pt")
    again = EZAgent.load(path)
    assert "corridor-cell" in again.objective.describe()
    probe = np.stack([envs.make("glasszero/CorridorTest-v0").reset(seed=s)[0] for s in range(8)])
    np.testing.assert_array_equal(agent.predict(probe)[0], again.predict(probe)[0])
    with torch.no_grad():
        z = agent.model.initial_inference(probe).latent
        np.testing.assert_array_equal(agent.objective.heads.value_of(z).numpy(),
                                      again.objective.heads.value_of(z).numpy())


@pytest.fixture(scope="module")
def corridor_starts_run(tmp_path_factory):
    """Trained on the test split's varied starts, so that its replay holds every cell."""
    logdir = tmp_path_factory.mktemp("corridor_starts")
    return train_run("ez", "glasszero/CorridorTest-v0", 0, 300, logdir, eval_interval=300, eval_episodes=2,
                     config_overrides=dict(TRAIN_OVERRIDES), progress_bar=False, verbose=False).run_dir


def test_refit_on_a_grid_reaches_the_new_target_from_every_start(corridor_starts_run):
    """The corridor's states repeat, so refit's values come from the replay graph: the new target
    (cell 4; the agent was trained to walk to cell 0) is reached from every start, including
    the target itself (leave and come back), and no latent is valued beyond the replayed values."""
    agent = EZAgent.load(corridor_starts_run / "resume.pt")
    reward = "envs.tasks:task(name='corridor-cell', cell=4)"
    report = refit(agent, reward, name="cell4", steps=300)
    assert report.graph_states == 7 and report.policy_agreement > 0.9
    env = envs.make("glasszero/CorridorTest-v0", wrappers=["envs.tasks:TaskReward(name='corridor-cell', cell=4)"])
    starts = set()
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        starts.add(env.unwrapped.position)
        for _ in range(20):
            obs, r, term, trunc, info = env.step(int(agent.predict(obs[None])[0][0]))
            if term or trunc:
                break
        assert term and info["task_success"], f"seed {seed}: did not reach cell 4"
    assert len(starts) >= 3
    heads = agent.objective.heads
    low, high = heads.value_range
    assert 0.0 <= low < high <= 1.0  # a goal reward of 1, paid once
    v = heads.value_of(10 * torch.randn(256, heads.latent_dim))  # far from every replayed latent
    assert bool(((v >= low) & (v <= high)).all())


def test_refit_command_writes_a_checkpoint_and_refuses_one_without_replay(corridor_run, tmp_path, capsys):
    out = tmp_path / "r.pt"
    assert main(["refit", "--checkpoint", str(corridor_run), "--reward",
                 "envs.tasks:task(name='corridor-cell', cell=6)", "--steps", "50", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["checkpoint"] == str(out) and out.exists()
    assert main(["eval", "--checkpoint", str(out), "--episodes", "2"]) == 0
    assert main(["refit", "--checkpoint", str(corridor_run / "model.pt"), "--reward",
                 "envs.tasks:task(name='corridor-cell', cell=6)"]) == 2
    assert "replay" in capsys.readouterr().err


def test_transfer_command_writes_its_report_and_resumes_without_retraining(tmp_path, capsys):
    argv = ["transfer", "--envs", CORRIDOR, "--split", "dev", "--out", str(tmp_path), "--steps", f"{CORRIDOR}=300",
            "--oracles", "ez", "--priors", "uniform", "--episodes", "3", "--refit-steps", "50"]
    assert main(argv) == 0
    for name in ("results.csv", "summary.md", "transfer.png", "transfer.json"):
        assert (tmp_path / name).exists()
    report = json.loads((tmp_path / "transfer.json").read_text())
    assert report["prior_after_swap"] == "uniform"
    row, = report["objectives"]
    assert row["split"] == "dev" and {"pct_oracle_zero_shot", "pct_oracle_refit"} <= set(row)
    rows = (tmp_path / "results.csv").read_text()
    assert main(argv) == 2  # the directory holds a study: --resume or another --out
    assert "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    assert (tmp_path / "results.csv").read_text() == rows
    assert "training" not in capsys.readouterr().out
    # Only the oracle's row missing (and the base's run gone): the resume trains the oracle alone.
    shutil.rmtree(tmp_path / "runs" / "base")
    (tmp_path / "results.csv").write_text("".join(line for line in rows.splitlines(keepends=True)
                                                  if ",oracle_ez," not in line))
    assert main(argv + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "oracle" in out and " base " not in out and not (tmp_path / "runs" / "base").exists()


def test_audit_reports_a_transfer_studys_median_and_refuses_another_file(tmp_path, capsys):
    study = tmp_path / "transfer.json"
    study.write_text(json.dumps({"median_pct_oracle_refit": 87.5}))
    argv = ["audit", "--checkpoint", "tests/fixtures/corridor_ez.pt", "--episodes", "2", "--no-sweep", "--json"]
    assert main(argv + ["--transfer", str(study)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["transfer_median"] == 87.5
    (tmp_path / "other.json").write_text("{}")
    assert main(argv + ["--transfer", str(tmp_path / "other.json")]) == 2
    assert "--transfer" in capsys.readouterr().err


def test_transfer_loads_a_base_agent_instead_of_training_one_and_refuses_a_wrong_one(corridor_run, tmp_path, capsys):
    argv = ["transfer", "--envs", CORRIDOR, "--split", "dev", "--out", str(tmp_path), "--steps", f"{CORRIDOR}=300",
            "--oracles", "ez", "--priors", "uniform", "--episodes", "2", "--refit-steps", "20"]
    assert main(argv + ["--base", f"CartPole-v1={corridor_run}"]) == 2
    assert "not ez on CartPole-v1" in capsys.readouterr().err
    assert main(argv + ["--base", f"{CORRIDOR}={tmp_path / 'nowhere'}"]) == 2
    assert "resume.pt" in capsys.readouterr().err
    assert main(argv + ["--base", f"{CORRIDOR}={corridor_run}"]) == 0
    assert not (tmp_path / "runs" / "base").exists()


def test_transfer_measures_on_another_environment_and_never_mixes_it_with_the_own(corridor_run, tmp_path, capsys):
    """--env/--env-kwargs: every measurement on Corridor's train split (starts mid-corridor)
    instead of the objective's own test-split env; a study keeps its evaluation environment."""
    argv = ["transfer", "--envs", CORRIDOR, "--split", "dev", "--out", str(tmp_path), "--steps", f"{CORRIDOR}=300",
            "--oracles", "ez", "--priors", "uniform", "--episodes", "2", "--refit-steps", "20",
            "--base", f"{CORRIDOR}={corridor_run}"]
    shifted = ["--env", CORRIDOR, "--env-kwargs", '{"split": "train"}']
    assert main(argv + shifted) == 0
    rows = (tmp_path / "results.csv").read_text().splitlines()[1:]
    assert rows and all(f",{CORRIDOR}," in r for r in rows)  # not glasszero/CorridorTest-v0
    assert main(argv + ["--resume"]) == 2  # the same study on the objectives' own envs: refused
    assert "another --out" in capsys.readouterr().err
    assert main(["transfer", "--env", CORRIDOR, "--out", str(tmp_path / "all")]) == 2  # one base env only
    assert "--envs" in capsys.readouterr().err
