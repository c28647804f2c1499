"""Stable-Baselines3 baselines: zoo hyperparameters, applicability, budget, save/load, the runner."""
import numpy as np
import pytest
import yaml
from stable_baselines3.common.vec_env import VecNormalize

from stable_baselines3.common.callbacks import BaseCallback

from agent.algorithms import load_agent, make_agent
from agent.baselines import BASELINES, Baseline
from agent.baselines.zoo import parse_policy_kwargs, zoo_hyperparams as resolve
from agent.runner import RunSummary, train_run
from envs import NotApplicable

ALGOS = [cls.algo for cls in BASELINES]


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_zoo_hyperparams_load_for_cartpole(algo):
    hp = resolve(algo, "CartPole-v1")
    assert hp.source.startswith(f"rl-baselines3-zoo hyperparams/{algo}.yml [CartPole-v1]")
    assert hp.policy == "MlpPolicy"
    assert "n_timesteps" not in hp.algo_kwargs and "n_envs" not in hp.algo_kwargs
    expected = {"ppo": dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20),
                "dqn": dict(n_envs=1, batch_size=64, buffer_size=100000, learning_starts=1000,
                            target_update_interval=10, train_freq=256, gradient_steps=128),
                "a2c": dict(n_envs=8, ent_coef=0.0)}[algo]
    assert hp.n_envs == expected.pop("n_envs")
    assert {k: hp.algo_kwargs[k] for k in expected} == expected


def test_zoo_linear_schedule_and_policy_kwargs_are_converted():
    ppo = resolve("ppo", "CartPole-v1").algo_kwargs
    assert ppo["learning_rate"](1.0) == pytest.approx(1e-3) and ppo["learning_rate"](0.25) == pytest.approx(2.5e-4)
    assert ppo["clip_range"](0.5) == pytest.approx(0.1)
    assert resolve("dqn", "CartPole-v1").algo_kwargs["policy_kwargs"] == {"net_arch": [256, 256]}
    model = make_agent("ppo", "CartPole-v1", seed=0).model
    assert (model.n_steps, model.batch_size, model.n_envs) == (32, 256, 8)


def test_policy_kwargs_parsed_safely():
    import torch.nn as nn
    kw = parse_policy_kwargs("dict(log_std_init=-2,\n ortho_init=False, activation_fn=nn.ReLU,"
                             " net_arch=dict(pi=[256, 256], vf=[256, 256]))")
    assert kw == {"log_std_init": -2, "ortho_init": False, "activation_fn": nn.ReLU,
                  "net_arch": {"pi": [256, 256], "vf": [256, 256]}}
    for bad in ("__import__('os').system('true')", "dict(x=open('f'))", "[1, 2]"):
        with pytest.raises(ValueError):
            parse_policy_kwargs(bad)


def test_zoo_normalize_becomes_vecnormalize_with_algorithm_gamma():
    hp = resolve("a2c", "Acrobot-v1")
    assert hp.normalize_kwargs == {} and hp.n_envs == 16  # a2c's Acrobot entry sets no gamma
    assert resolve("ppo", "Acrobot-v1").normalize_kwargs == {"gamma": 0.99}
    assert isinstance(make_agent("a2c", "Acrobot-v1").model.get_env(), VecNormalize)


def test_overrides_and_missing_zoo_entry():
    hp = resolve("ppo", "CartPole-v1", {"n_steps": 16, "n_envs": 2})
    assert hp.algo_kwargs["n_steps"] == 16 and hp.n_envs == 2 and "overrides" in hp.source
    assert resolve("dqn", "Pendulum-v1").source.startswith("stable-baselines3 defaults")


def test_not_applicable_is_a_clear_value_error():
    with pytest.raises(NotApplicable, match="dqn does not apply to Pendulum-v1.*Discrete"):
        make_agent("dqn", "Pendulum-v1")
    assert issubclass(NotApplicable, ValueError)
    with pytest.raises(ValueError, match="Unknown algorithm 'sac'"):
        make_agent("sac", "CartPole-v1")


class _Record(BaseCallback):
    """Records (env steps, greedy actions at three observations) after every vector step."""

    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def _on_step(self) -> bool:
        self.calls.append((self.num_timesteps, self.model.predict(np.zeros((3, 4)), deterministic=True)[0]))
        return True


def test_learn_stops_at_the_budget_and_calls_the_hook():
    calls = []
    model = make_agent("ppo", "CartPole-v1", seed=0, config={"n_steps": 16, "batch_size": 128})
    model.learn(200, progress_bar=False, callback=_Record(calls))
    assert model.num_timesteps == 200  # 8 envs x 16 steps per rollout would otherwise end at 256
    assert [s for s, _ in calls] == list(range(8, 201, 8))
    assert calls[-1][1].shape == (3,)


@pytest.mark.parametrize("algo,env_id", [("ppo", "CartPole-v1"), ("dqn", "CartPole-v1"), ("a2c", "Acrobot-v1")])
def test_save_load_gives_identical_deterministic_actions(tmp_path, algo, env_id):
    model = make_agent(algo, env_id, seed=3, config={"learning_starts": 50} if algo == "dqn" else None)
    model.learn(400, progress_bar=False)
    path = model.save(tmp_path / "model")
    assert path.name == "model.zip" and [p.name for p in tmp_path.iterdir()] == ["model.zip"]
    loaded = Baseline.load(path)
    obs = np.random.default_rng(0).normal(size=(64, *model.model.observation_space.shape)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs)[0], loaded.predict(obs)[0])
    if algo == "a2c":  # the VecNormalize statistics travel in the checkpoint and are used to act
        assert loaded.vec_normalize is not None
        np.testing.assert_allclose(loaded.vec_normalize.obs_rms.mean, model.vec_normalize.obs_rms.mean)
        assert np.any(model.vec_normalize.obs_rms.mean != 0)


def test_train_run_writes_the_run_dir_and_load_agent_reopens_it(tmp_path):
    summary = train_run("a2c", "CartPole-v1", 1, 320, tmp_path, eval_interval=160, eval_episodes=2,
                        progress_bar=False, verbose=False)
    run_dir = tmp_path / "a2c_CartPole-v1_s1"
    assert summary.run_dir == run_dir and summary.env_steps == 320  # a multiple of the 8 envs
    assert [r.env_steps for r in summary.history] == [160, 320]
    assert summary.parameters == make_agent("a2c", "CartPole-v1").num_parameters
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "model.zip", "evaluations.csv", "result.json"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (config["algo"], config["env"], config["seed"], config["steps"]) == ("a2c", "CartPole-v1", 1, 320)
    assert config["hyperparameters"]["n_envs"] == 8 and "rl-baselines3-zoo" in config["hyperparameters_source"]
    assert RunSummary.load(run_dir).final_mean_return == summary.final_mean_return
    assert isinstance(load_agent(run_dir), Baseline) and isinstance(load_agent(run_dir / "model.zip"), Baseline)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_train_run_logs_the_shared_tensorboard_tags(tmp_path, algo):
    # A2C dumps SB3's own logs only every 100 updates (4,000 CartPole steps): time/fps must still be there.
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    train_run(algo, "CartPole-v1", 0, 512, tmp_path, eval_interval=256, eval_episodes=1,
              progress_bar=False, verbose=False)
    mux = EventMultiplexer({"run": str(tmp_path / f"{algo}_CartPole-v1_s0")})
    mux.Reload()
    tags = mux.Runs()["run"]["scalars"]
    assert {"eval/mean_return", "time/fps"} <= set(tags)
    assert [e.step for e in mux.Scalars("run", "eval/mean_return")] == [256, 512]
    fps_steps = [e.step for e in mux.Scalars("run", "time/fps")]
    assert min(fps_steps) <= 256 and all(e.value > 0 for e in mux.Scalars("run", "time/fps"))


def test_train_run_resumes_from_a_checkpoint(tmp_path):
    first = train_run("ppo", "CartPole-v1", 0, 256, tmp_path, eval_interval=128, eval_episodes=1,
                      progress_bar=False, verbose=False)
    more = train_run("ppo", "CartPole-v1", 0, 512, tmp_path, eval_interval=128, eval_episodes=1,
                     progress_bar=False, verbose=False, resume=str(first.run_dir / "model.zip"))
    assert more.env_steps == 512 and [r.env_steps for r in more.history] == [384, 512]
