"""Bad inputs are refused early and clearly: the CLI exits 2 with an `error: ...` line naming the flag
and the fix, the Python API raises a ValueError; nothing is trained, built or deleted first."""
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from agent.baselines import PPOBaseline
from agent.cli import main as cli_main
from agent.config import parse_set
from agent.evaluation import evaluate
from agent.ez import EZAgent
from agent.runner import train_run
from nets import NetConfig, NonFiniteObservation, build_model, resolve_device
from planners.objectives import ObservationValue
from planners.plugins import PluggedFn
from tests.test_objective_swap import FIXTURES, load_fixture

CARTPOLE = str(FIXTURES / "cartpole_ez.pt")
TINY = ["--set", "search.num_simulations=2", "--set", "num_envs=2", "--set", "batch_size=8",
        "--set", "learning_starts=8", "--set", "net.latent_dim=8", "--set", "net.hidden=[8]"]
TINY_CONFIG = {"search.num_simulations": 2, "num_envs": 2, "batch_size": 8, "learning_starts": 8,
               "net.latent_dim": 8, "net.hidden": [8]}


def refused(capsys, argv, *needles) -> str:
    """Run the CLI, expect exit 2 and an `error: ...` line holding every needle; return it."""
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def nothing_runs(monkeypatch):
    """Any training run, comparison, misgen study or checkpoint load fails the test."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("refused too late: work started before the bad input was noticed")

    for target in ("agent.cli.train.train_run", "agent.cli.compare.train_run", "agent.cli.misgen.run_misgen",
                   "agent.cli.evaluate.load_agent", "agent.algorithms.load_agent"):
        monkeypatch.setattr(target, must_not_run)


# ---------------------------------------------------------------- 1, 6, 7: numbers out of range
@pytest.mark.parametrize("flag, value, message", [
    ("--steps", "-5", "--steps must be >= 1"), ("--steps", "0", "--steps must be >= 1"),
    ("--eval-interval", "0", "--eval-interval must be >= 1"), ("--log-interval", "0", "--log-interval must be >= 1"),
    ("--checkpoint-interval", "0", "--checkpoint-interval must be >= 1"),
    ("--checkpoint-seconds", "0", "--checkpoint-seconds must be > 0"),
    ("--checkpoint-seconds", "nan", "--checkpoint-seconds must be > 0"),
    ("--audit-episodes", "-1", "--audit-episodes must be >= 0"),
    ("--eval-episodes", "0", "--eval-episodes must be >= 1"), ("--seed", "-1", "--seed must be >= 0")])
def test_train_refuses_out_of_range_numbers_first(capsys, tmp_path, nothing_runs, flag, value, message):
    refused(capsys, ["--logdir", str(tmp_path / "runs"), flag, value], message)
    assert not (tmp_path / "runs").exists()


def test_zero_eval_episodes_keeps_the_previous_run(capsys, tmp_path):
    run_dir = tmp_path / "ez_CartPole-v1_s0"
    run_dir.mkdir()
    for name in ("evaluations.csv", "result.json"):
        (run_dir / name).write_text("previous run")
    refused(capsys, ["--logdir", str(tmp_path), "--eval-episodes", "0", *TINY], "--eval-episodes")
    assert (run_dir / "evaluations.csv").read_text() == (run_dir / "result.json").read_text() == "previous run"


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "--steps must be >= 1"), ({"seed": -1}, "--seed must be >= 0"),
    ({"eval_episodes": 0}, "--eval-episodes must be >= 1"), ({"log_interval": 0}, "--log-interval"),
    ({"checkpoint_seconds": -1.0}, "--checkpoint-seconds"), ({"audit_episodes": -2}, "--audit-episodes")])
def test_train_run_refuses_the_same_from_python(tmp_path, kwargs, message):
    args = {"algo": "ez", "env_id": "CartPole-v1", "seed": 0, "steps": 16, "logdir": tmp_path / "runs",
            "eval_interval": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        train_run(**args)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps must be >= 1"), (["--eval-interval", "0"], "--eval-interval must be >= 1"),
    (["--eval-episodes", "0"], "--eval-episodes must be >= 1"), (["--seeds", "0,-1"], "--seeds must be >= 0"),
    (["--workers", "0"], "--workers must be >= 1")])
def test_compare_refuses_out_of_range_numbers_first(capsys, tmp_path, nothing_runs, extra, message):
    refused(capsys, ["compare", "--algos", "ppo", "--out", str(tmp_path / "out"), *extra], message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "budgets must be >= 1"), (["--steps", "100,ppo=-3"], "budgets must be >= 1"),
    (["--episodes", "0"], "--episodes must be >= 1"), (["--eval-interval", "0"], "--eval-interval must be >= 1"),
    (["--seeds", "-1"], "--seeds must be >= 0")])
def test_misgen_refuses_out_of_range_numbers_first(capsys, tmp_path, nothing_runs, extra, message):
    refused(capsys, ["misgen", "--algos", "ppo", "--out", str(tmp_path / "out"), *extra], message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["eval", "--episodes", "0"], "--episodes must be >= 1"), (["audit", "--episodes", "0"], "--episodes must be >= 1"),
    (["eval", "--seed", "-1"], "--seed must be >= 0"), (["audit", "--seed", "-1"], "--seed must be >= 0"),
    (["explain", "--seed", "-1"], "--seed must be >= 0"),
    (["audit", "--sweep", "0,x"], "--sweep must be comma-separated"),
    (["audit", "--sweep", "-1"], "--sweep counts must be >= 0"),
    (["audit", "--threshold", "nan"], "--threshold must be a finite")])
def test_checkpoint_commands_refuse_before_loading(capsys, nothing_runs, argv, message):
    refused(capsys, [*argv, "--checkpoint", CARTPOLE], message)


# ---------------------------------------------------------------- 2: observations with NaN or inf
class NaNObservations(gym.ObservationWrapper):
    """An environment gone wrong: every observation is NaN."""

    def observation(self, observation):
        return np.full_like(observation, np.nan)


def test_the_model_blames_a_nan_observation_and_still_reports_divergence():
    model = build_model((4,), 2, NetConfig(latent_dim=8, hidden=[8]), "cpu")
    obs = np.zeros((3, 4), np.float32)
    obs[1, 0], obs[2, 3] = np.nan, np.inf
    with pytest.raises(NonFiniteObservation, match=r"observation .* not finite: row\(s\) 1, 2 of the batch of 3"):
        model.initial_inference(obs)
    assert issubclass(NonFiniteObservation, ValueError)
    with torch.no_grad():
        next(model.prediction.parameters()).fill_(float("nan"))  # a diverged network, finite input
    with pytest.raises(FloatingPointError, match="diverged"):
        model.initial_inference(np.zeros((3, 4), np.float32))


def test_explain_refuses_a_nan_obs_naming_the_flag(capsys):
    refused(capsys, ["explain", "--checkpoint", CARTPOLE, "--obs", "[NaN, 0, 0, 0]"], "--obs", "finite")


def test_nan_observations_from_the_env_name_it_in_training_and_evaluation(capsys, tmp_path):
    agent = EZAgent("CartPole-v1", config=TINY_CONFIG, wrappers=[NaNObservations])
    with pytest.raises(ValueError, match="CartPole-v1 .self-play.*observation .* not finite"):
        agent.learn(4)
    with pytest.raises(ValueError, match="CartPole-v1 .evaluation.*observation .* not finite"):
        evaluate(lambda obs: agent.predict(obs)[0], "CartPole-v1", 0, 2, wrappers=[NaNObservations])
    refused(capsys, ["--logdir", str(tmp_path), "--wrapper", "tests.test_bad_inputs:NaNObservations", "--no-progress",
                     *TINY], "CartPole-v1", "observation", "not finite")


# ---------------------------------------------------------------- 3: plug-ins that change later
class ChangesLater:
    """A plug-in that behaves for its first `good` calls, then returns two values per row or raises."""

    def __init__(self, good: int, then: str):
        self.calls, self.good, self.then = 0, good, then

    def __call__(self, obs):
        self.calls += 1
        if self.calls <= self.good:
            return obs[:, 0]
        if self.then == "raise":
            raise KeyError("no such column")
        return obs[:, :2]


def test_a_plugged_function_is_checked_on_every_call():
    x = torch.zeros(5, 4)
    fn = PluggedFn(ChangesLater(1, "shape"), "value function")
    fn(x)
    with pytest.raises(ValueError, match=r"value function ChangesLater.*shape \[5\].*shape \(5, 4\).*shape \(5, 2\)"):
        fn(x)
    fn = PluggedFn(ChangesLater(1, "raise"), "value function")
    fn(x)
    with pytest.raises(ValueError, match=r"value function ChangesLater.* raised KeyError.*shape \(5, 4\)"):
        fn(x)


@pytest.mark.parametrize("then", ["shape", "raise"])
def test_a_plug_in_that_breaks_mid_search_is_named(then):
    agent = load_fixture("corridor")
    agent.set_objective(ObservationValue(ChangesLater(3, then)))  # validate's three calls pass (leaf, terminal, root)
    with pytest.raises(ValueError, match="observation value function ChangesLater"):
        agent.predict(np.zeros(agent.obs_shape, agent.obs_dtype))


# ---------------------------------------------------------------- 4: --set that is not YAML
def test_a_set_value_that_is_not_yaml_names_the_item(capsys, tmp_path, nothing_runs):
    with pytest.raises(ValueError, match=r"--set 'net.hidden=\[64,'.*YAML.*closing bracket"):
        parse_set(["net.hidden=[64,"])
    refused(capsys, ["--logdir", str(tmp_path), "--set", "net.hidden=[64,"], "--set 'net.hidden=[64,'", "YAML")


def test_a_temperature_the_gumbel_search_would_ignore_is_refused(capsys, tmp_path, nothing_runs):
    # CartPole's preset searches with Gumbel, which acts by sequential halving: a temperature asked
    # for there would change nothing (a screened run gave the preset's curve to the digit).
    from agent.config import resolve_config, resume_overrides
    with pytest.raises(ValueError, match=r"temperature \[\[0\.0, 0\.25\]\] has no effect.*search.algorithm=puct"):
        resolve_config("CartPole-v1", sets=["temperature=[[0.0, 0.25]]"])
    asked = resolve_config("CartPole-v1", sets=["search.algorithm=puct", "temperature=[[0.0, 0.25]]"])
    assert asked.temperature == [[0.0, 0.25]]
    assert resolve_config("MountainCar-v0").search.algorithm == "gumbel"  # a preset's own schedule is not the user's
    with pytest.raises(ValueError, match="has no effect with search.algorithm='gumbel'"):  # nor on resume
        resume_overrides(resolve_config("CartPole-v1"), {"temperature": [[0.0, 0.5]]})
    refused(capsys, ["--logdir", str(tmp_path), "--set", "temperature=[[0.0, 0.25]]"], "temperature", "gumbel")


def test_gumbel_settings_a_puct_search_would_ignore_are_refused(capsys, tmp_path, nothing_runs):
    # LunarLander's preset searches with pUCT: the halving's size never matters there, and sigma's
    # scale only where the policy trains on the improved policy.
    from agent.config import resolve_config, resume_overrides
    with pytest.raises(ValueError, match=r"search.gumbel_c_scale has no effect.*policy_target=improved"):
        resolve_config("LunarLander-v3", sets=["search.gumbel_c_scale=0.2"])
    with pytest.raises(ValueError, match=r"search.gumbel_max_considered has no effect.*search.algorithm=gumbel"):
        resolve_config("LunarLander-v3", sets=["search.policy_target=improved", "search.gumbel_max_considered=4"])
    asked = resolve_config("LunarLander-v3", sets=["search.policy_target=improved", "search.gumbel_c_scale=0.2"])
    assert asked.search.gumbel_c_scale == 0.2
    assert resolve_config("CartPole-v1", sets=["search.gumbel_c_visit=25"]).search.gumbel_c_visit == 25
    with pytest.raises(ValueError, match="search.gumbel_c_visit has no effect"):  # nor on resume
        resume_overrides(resolve_config("LunarLander-v3"), {"search": {"gumbel_c_visit": 25}})
    refused(capsys, ["--env", "LunarLander-v3", "--logdir", str(tmp_path), "--set", "search.gumbel_c_scale=0.2"],
            "search.gumbel_c_scale", "policy_target=improved")


def test_a_resumed_run_is_judged_by_its_own_search_not_the_preset(capsys, tmp_path):
    # A CartPole run started with pUCT (the preset: Gumbel) takes a temperature on resume; one that
    # searches with Gumbel is refused it, after the load and before anything is written.
    def run(seed, *sets, resume=False):
        argv = ["--env", "CartPole-v1", "--seed", str(seed), "--steps", "300" if resume else "200",
                "--logdir", str(tmp_path), "--eval-interval", "100", "--eval-episodes", "1", "--no-progress",
                "--set", "learning_starts=64", "--set", "search.num_simulations=4", "--set", "batch_size=16"]
        for item in sets:
            argv += ["--set", item]
        if resume:
            argv += ["--resume", str(tmp_path / f"ez_CartPole-v1_s{seed}")]
        return cli_main(argv)

    assert run(0, "search.algorithm=puct") == 0
    assert run(0, "temperature=[[0.0, 0.5]]", resume=True) == 0
    assert run(1) == 0
    written = sorted(p.name for p in (tmp_path / "ez_CartPole-v1_s1").iterdir())
    capsys.readouterr()
    assert run(1, "temperature=[[0.0, 0.5]]", resume=True) == 2
    assert "has no effect with search.algorithm='gumbel'" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "ez_CartPole-v1_s1").iterdir()) == written


# ---------------------------------------------------------------- 5: a device this machine lacks
@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("argv", [
    ["train"], ["train", "--algo", "ppo"], ["eval", "--checkpoint", CARTPOLE], ["explain", "--checkpoint", CARTPOLE],
    ["audit", "--checkpoint", CARTPOLE], ["compare", "--algos", "ez,ppo"], ["misgen", "--algos", "ppo"]])
def test_every_command_refuses_an_unavailable_device(capsys, tmp_path, monkeypatch, no_cuda, nothing_runs, argv):
    monkeypatch.chdir(tmp_path)
    refused(capsys, [*argv, "--device", "cuda"], "--device cuda", "CUDA is not available", "available here: auto, cpu")
    assert list(tmp_path.iterdir()) == []


def test_the_python_api_refuses_an_unavailable_device_too(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")
    for make in (lambda: resolve_device("cuda:0"), lambda: PPOBaseline("CartPole-v1", device="cuda"),
                 lambda: EZAgent("CartPole-v1", config=TINY_CONFIG, device="cuda")):
        with pytest.raises(ValueError, match="--device cuda.*CUDA is not available"):
            make()
    with pytest.raises(ValueError, match="--device 'tpu' is not a torch device"):
        resolve_device("tpu")


# ---------------------------------------------------------------- 8: an algorithm that does not exist
def test_compare_refuses_an_unknown_algorithm_and_trains_nothing(capsys, tmp_path, nothing_runs):
    refused(capsys, ["compare", "--algos", "ppo,sac", "--out", str(tmp_path / "out")],
            "unknown algorithm 'sac'", "ez, ppo, dqn, a2c")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 9: wrappers with arguments
DISCRETIZE = "gymnasium.wrappers:DiscretizeAction(bins=5)"


def test_a_wrapper_with_literal_arguments_builds_and_round_trips(tmp_path):
    assert envs.make("Pendulum-v1", wrappers=[DISCRETIZE]).action_space == gym.spaces.Discrete(5)
    agent = EZAgent("Pendulum-v1", config=TINY_CONFIG, wrappers=[DISCRETIZE])
    assert agent.num_actions == 5 and agent.wrappers == [DISCRETIZE]
    again = EZAgent.load(agent.save(tmp_path / "model.pt"), device="cpu")
    assert again.wrappers == [DISCRETIZE] and again.num_actions == 5


@pytest.mark.parametrize("wrapper, message", [
    ("gymnasium.wrappers:DiscretizeAction", r"DiscretizeAction' could not be built: TypeError.*bins.*key=value"),
    ("gymnasium.wrappers:DiscretizeAction(bins=5, nope=1)", r"could not be built: TypeError.*nope"),
    ("gymnasium.wrappers:DiscretizeAction(5)", "literal keyword arguments"),
    ("gymnasium.wrappers:DiscretizeAction(bins=5", "literal keyword arguments"),
    ("gymnasium.wrappers:DiscretizeAction(bins=__import__('os').getpid())", "the value of bins is not a literal")])
def test_a_wrapper_that_cannot_be_built_is_named_with_the_syntax(wrapper, message):
    with pytest.raises(ValueError, match=message):
        envs.make("Pendulum-v1", wrappers=[wrapper])


def test_train_refuses_a_wrapper_missing_its_arguments(capsys, tmp_path):
    refused(capsys, ["--env", "Pendulum-v1", "--logdir", str(tmp_path), "--wrapper", "gymnasium.wrappers:DiscretizeAction",
                     *TINY], "wrapper 'gymnasium.wrappers:DiscretizeAction' could not be built", "key=value")


# ---------------------------------------------------------------- 10: --env-module from the current directory
@pytest.fixture
def env_module_in_cwd(tmp_path, monkeypatch):
    """A module in the (temporary) current directory that registers a short copy of CartPole."""
    name = f"cwd_envs_{abs(hash(str(tmp_path)))}"  # a fresh module name per test: nothing cached
    env_id = f"{name}/Cart-v0"
    (tmp_path / f"{name}.py").write_text(
        "import gymnasium as gym\n"
        f"gym.register({env_id!r}, entry_point='gymnasium.envs.classic_control:CartPoleEnv', max_episode_steps=10)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # import_from_cwd adds the cwd; undone afterwards
    yield name, env_id
    sys.modules.pop(name, None)
    gym.registry.pop(env_id, None)


def test_env_module_in_the_current_directory_is_found(env_module_in_cwd):
    name, env_id = env_module_in_cwd
    assert env_id not in gym.registry
    env = envs.make(env_id, seed=0, env_module=name)
    assert env.spec.id == env_id and env.spec.max_episode_steps == 10


def test_train_cli_env_module_in_the_current_directory(env_module_in_cwd, tmp_path):
    name, env_id = env_module_in_cwd
    assert cli_main(["--env-module", name, "--env", env_id, "--steps", "4", "--eval-episodes", "1",
                     "--audit-episodes", "0", "--no-progress", "--logdir", "runs", *TINY]) == 0
    assert len(list((tmp_path / "runs").glob("*/result.json"))) == 1


# ---------------------------------------------------------------- 11: another environment (--env, --wrapper, ...)
@pytest.mark.parametrize("command", ["eval", "audit", "explain"])
def test_an_environment_with_other_spaces_is_refused_before_any_episode(capsys, monkeypatch, command):
    def must_not_run(*args, **kwargs):
        raise AssertionError("refused too late: an episode ran on the mismatched environment")

    for target in ("agent.cli.evaluate.evaluate", "agent.studies.audit.evaluate", "agent.cli.explain.explain"):
        monkeypatch.setattr(target, must_not_run)
    refused(capsys, [command, "--checkpoint", CARTPOLE, "--env", "glasszero/Corridor-v0"],
            "--env glasszero/Corridor-v0", "observation space Box(shape=(8,), dtype=float32)",
            "trained on CartPole-v1", "observation space Box(shape=(4,), dtype=float32)",
            "the observation spaces differ", "a Box's bounds may differ", "--wrapper")


@pytest.mark.parametrize("extra, message", [
    (["--env-kwargs", "split=test"], "--env-kwargs must be a JSON object"),
    (["--env-kwargs", "[1, 2]"], "--env-kwargs must be a JSON object"),
    (["--wrapper", "gymnasium.wrappers:DiscretizeAction(5)"], "literal keyword arguments")])
@pytest.mark.parametrize("command", ["eval", "audit", "explain"])
def test_malformed_environment_flags_are_refused_before_loading(capsys, nothing_runs, command, extra, message):
    refused(capsys, [command, "--checkpoint", CARTPOLE, *extra], message)


@pytest.mark.parametrize("extra, message", [
    (["--env", "CartPole-v9"], "Unknown environment id 'CartPole-v9'"),
    (["--env-kwargs", '{"nope": 1}'], "--env-kwargs"),
    (["--wrapper", "tests.test_bad_inputs:NoSuchWrapper"], "no attribute")])
def test_an_environment_that_cannot_be_made_names_the_flag(capsys, extra, message):
    refused(capsys, ["eval", "--checkpoint", CARTPOLE, *extra], extra[0], message)
