"""One protocol for every algorithm, the registries (algorithms, objectives) and the callbacks
around `learn`."""
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback, EveryNTimesteps

from agent.algorithms import ALGORITHMS, algorithm, load_agent, make_agent, parse_algorithms
from agent.callbacks import CheckpointCallback, EvalCallback, LogCallback
from agent.ez import EZAgent
from agent.protocol import Agent
from planners.objectives import OBJECTIVES, Objective, objective_from_spec, register
from tests.test_agent_ez import FIXED_OBS, tiny_agent


def test_every_registered_algorithm_implements_the_protocol():
    assert list(ALGORITHMS) == ["ez", "ppo", "dqn", "a2c"]
    for name, cls in ALGORITHMS.items():
        assert issubclass(cls, Agent) and cls.algo == name
        assert cls.CHECKPOINT and cls.RESUME
        assert not getattr(cls, "__abstractmethods__", None), (name, cls.__abstractmethods__)
    assert ALGORITHMS["ez"].can_swap_objective and ALGORITHMS["ez"].can_audit
    assert not any(ALGORITHMS[a].can_swap_objective for a in ("ppo", "dqn", "a2c"))


def test_unknown_algorithms_are_refused_by_name_before_anything_runs():
    with pytest.raises(ValueError, match="Unknown algorithm 'sac'; choose one of ez, ppo, dqn, a2c"):
        algorithm("sac")
    with pytest.raises(ValueError, match="--algos 'ez,sac': unknown algorithm 'sac'"):
        parse_algorithms("ez,sac")
    assert parse_algorithms(" EZ, ppo ") == ["ez", "ppo"]


def test_load_agent_reopens_each_algorithm_as_its_own_class(tmp_path):
    ez = tiny_agent()
    dqn = make_agent("dqn", "CartPole-v1", seed=1)
    ez_path, dqn_path = ez.save(tmp_path / "ez" / "model.pt"), dqn.save(tmp_path / "dqn" / "model.zip")
    assert type(load_agent(ez_path)) is EZAgent and type(load_agent(tmp_path / "ez")) is EZAgent
    assert type(load_agent(dqn_path)) is ALGORITHMS["dqn"]
    np.testing.assert_array_equal(load_agent(dqn_path).predict(FIXED_OBS)[0], dqn.predict(FIXED_OBS)[0])
    with pytest.raises(FileNotFoundError, match="holds no model.pt or model.zip"):
        load_agent(tmp_path)


@register("test-cart-left")
class CartLeft(Objective):
    """A user-defined objective kind, registered from outside planners/ (the registry is open)."""

    def __init__(self, weight: float = 1.0, discount: float = 0.997):
        self.weight, self.discount = float(weight), float(discount)

    def edge_reward(self, model, parent_latent, action, out):
        return torch.zeros_like(out.reward)

    def leaf_value(self, model, out):
        return -self.weight * model.decode(out.latent)[:, 0]

    def describe(self) -> str:
        return f"CartLeft(weight={self.weight:g})"

    def to_spec(self) -> dict:
        return {"name": self.kind, "weight": self.weight, "discount": self.discount}


def test_a_user_registered_objective_round_trips_a_checkpoint(tmp_path):
    agent = tiny_agent(extra=["net.use_decoder=true"])
    agent.set_objective('{"name": "test-cart-left", "weight": 2}')
    assert isinstance(agent.objective, CartLeft) and agent.objective.discount == agent.config.discount
    loaded = EZAgent.load(agent.save(tmp_path / "model.pt"), device="cpu")
    assert loaded.objective.to_spec() == agent.objective.to_spec()
    np.testing.assert_array_equal(loaded.predict(FIXED_OBS)[0], agent.predict(FIXED_OBS)[0])
    with pytest.raises(ValueError, match="unknown objective 'nope'; known: learned, reward-only"):
        objective_from_spec({"name": "nope"})
    assert {"learned", "reward-only", "pessimistic", "observed-goal-distance", "aux"} <= set(OBJECTIVES)


def test_a_root_conditioned_objective_round_trips_a_checkpoint(tmp_path):
    agent = EZAgent("glasszero/CornerGoal-v0", {"net.use_decoder": True, "search.num_simulations": 4},
                    device="cpu")
    agent.set_objective({"name": "observed-goal-distance", "agent_cols": [0, 1], "goal_cols": [2, 3]})
    loaded = EZAgent.load(agent.save(tmp_path / "model.pt"), device="cpu")
    assert loaded.objective.to_spec() == agent.objective.to_spec()
    obs = np.array([[-1, -1, 1, 1], [1, 1, -1, -1]], np.float32)
    np.testing.assert_array_equal(loaded.predict(obs)[0], agent.predict(obs)[0])
    torch.testing.assert_close(loaded.objective.goal, torch.as_tensor(obs[:, 2:]))  # observed at the roots


class _StopAt(BaseCallback):
    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        return self.num_timesteps < self.steps


def test_a_callback_returning_false_stops_learn():
    agent = tiny_agent()
    agent.learn(400, callback=_StopAt(40))
    assert agent.num_timesteps == 40


def test_eval_callback_follows_the_grid_ends_with_a_final_evaluation_and_resumes_it(tmp_path):
    agent = tiny_agent()
    lines = []
    evaluation = EvalCallback("CartPole-v1", 0, interval=40, episodes=2, run_dir=tmp_path, write=lines.append)
    agent.learn(100, callback=evaluation)
    assert [r.env_steps for r in evaluation.history] == [40, 80, 100]
    assert len(lines) == 3 and (tmp_path / "evaluations.csv").read_text().count("\n") == 4
    agent.learn(60, callback=evaluation)  # the grid goes on from 100: 120, 160 (the end)
    assert [r.env_steps for r in evaluation.history] == [40, 80, 100, 120, 160]


def test_eval_callback_stops_training_at_a_return_and_composes_with_sb3_callbacks():
    agent = tiny_agent()
    evaluation = EvalCallback("CartPole-v1", 0, interval=8, episodes=1, write=lambda line: None,
                              stop_at_return=0.0, evaluate_at_end=False)
    calls = []

    class Count(BaseCallback):
        def _on_step(self):
            calls.append(self.num_timesteps)
            return True

    agent.learn(400, callback=[EveryNTimesteps(16, Count()), evaluation])
    assert agent.num_timesteps == 8 and [r.env_steps for r in evaluation.history] == [8]
    assert calls == []  # stopped before SB3's EveryNTimesteps was due
    agent.learn(32, callback=EveryNTimesteps(16, Count()))
    assert calls == [16, 32]  # EveryNTimesteps counts from step 0


def test_checkpoint_callback_writes_at_its_interval_and_at_the_end(tmp_path):
    agent = tiny_agent()
    written = []

    class Spy(CheckpointCallback):
        def save(self):
            written.append(self.model.num_timesteps)
            return super().save()

    agent.learn(100, callback=Spy(tmp_path, every_steps=40))
    assert written == [40, 80, 100]
    assert EZAgent.load(tmp_path / "resume.pt").num_timesteps == 100
    with pytest.raises(ValueError, match="checkpoint intervals must be positive"):
        CheckpointCallback(tmp_path, every_steps=0)


def test_log_callback_writes_the_shared_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    agent = tiny_agent(run_dir=tmp_path)
    agent.learn(160, callback=LogCallback(40))
    tags = set(EventAccumulator(str(tmp_path)).Reload().Tags()["scalars"])
    assert {"time/fps", "loss/value", "loss/policy", "search/root_value", "search/depth", "replay/size"} <= tags
