"""`eval`, `audit` and `explain` on another environment: --env, --env-kwargs, --wrapper (agent/cli/env_flags.py)."""
import argparse
import json

import gymnasium as gym
import numpy as np
import pytest

from agent.algorithms import make_agent
from agent.cli import main as cli_main
from agent.cli.env_flags import add_env_arguments, resolve_env, same_space
from agent.evaluation import evaluate
from tests.test_objective_swap import FIXTURES, load_fixture

CORRIDOR = str(FIXTURES / "corridor_ez.pt")
SCALE3 = "tests.test_env_flags:ScaleReward(scale=3.0)"


class ScaleReward(gym.RewardWrapper):
    """Every reward times `scale`: a reward wrapper constructible from a literal --wrapper string."""

    def __init__(self, env, scale: float = 1.0):
        super().__init__(env)
        self.scale = float(scale)

    def reward(self, reward):
        return self.scale * reward


def _args(*argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_env_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_checkpoints_environment_is_the_default_and_wrappers_add_after_its_own():
    agent = load_fixture("corridor")
    agent.wrappers = ["tests.test_env_flags:ScaleReward(scale=1.0)"]  # as if trained with a wrapper
    assert resolve_env(agent, _args()) == ("glasszero/Corridor-v0", agent.wrappers, {})
    env_id, wrappers, kwargs = resolve_env(agent, _args("--env-kwargs", '{"split": "test"}', "--wrapper", SCALE3))
    assert (env_id, wrappers, kwargs) == ("glasszero/Corridor-v0", [*agent.wrappers, SCALE3], {"split": "test"})
    assert resolve_env(agent, _args("--wrapper", SCALE3, "--replace-wrappers")).wrappers == [SCALE3]


def test_a_box_with_other_bounds_is_the_same_space_but_another_shape_or_dtype_is_not():
    box = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
    assert same_space(gym.spaces.Box(-5.0, 5.0, shape=(4,), dtype=np.float32), box)  # a shifted environment
    assert not same_space(gym.spaces.Box(-1.0, 1.0, shape=(5,), dtype=np.float32), box)
    assert not same_space(gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float64), box)
    assert same_space(gym.spaces.Discrete(3), gym.spaces.Discrete(3))
    assert not same_space(gym.spaces.Discrete(3), gym.spaces.Discrete(4))
    assert not same_space(gym.spaces.Discrete(3), box)


def test_eval_on_the_test_split_names_the_environment(capsys):
    assert cli_main(["eval", "--checkpoint", CORRIDOR, "--episodes", "3", "--env", "glasszero/Corridor-v0",
                     "--env-kwargs", '{"split": "test"}', "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["env_id"] == report["checkpoint_env_id"] == "glasszero/Corridor-v0"
    assert report["env_kwargs"] == {"split": "test"} and report["wrappers"] == []
    agent = load_fixture("corridor")
    test_split = evaluate(lambda obs: agent.predict(obs)[0], "glasszero/Corridor-v0", agent.seed, 3,
                          env_kwargs={"split": "test"})
    assert report["returns"] == test_split.returns.tolist() and report["lengths"] == test_split.lengths.tolist()
    train_split = evaluate(lambda obs: agent.predict(obs)[0], "glasszero/Corridor-v0", agent.seed, 3)
    assert report["lengths"] != train_split.lengths.tolist()  # the test split starts elsewhere
    assert cli_main(["eval", "--checkpoint", CORRIDOR, "--episodes", "3", "--env-kwargs", '{"split": "test"}']) == 0
    assert capsys.readouterr().out.startswith('glasszero/Corridor-v0 {"split": "test"} | 3 episodes')


def test_a_reward_wrapper_changes_the_return(capsys):
    assert cli_main(["eval", "--checkpoint", CORRIDOR, "--episodes", "3", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert cli_main(["eval", "--checkpoint", CORRIDOR, "--episodes", "3", "--wrapper", SCALE3, "--json"]) == 0
    scaled = json.loads(capsys.readouterr().out)
    assert scaled["wrappers"] == [SCALE3] and scaled["lengths"] == plain["lengths"]
    assert scaled["returns"] == pytest.approx([3 * r for r in plain["returns"]]) and plain["mean_return"] != 0


def test_audit_and_explain_take_the_environment_flags(capsys, tmp_path):
    assert cli_main(["audit", "--checkpoint", CORRIDOR, "--episodes", "2", "--env-kwargs", '{"split": "test"}',
                     "--wrapper", SCALE3, "--sweep", "0,1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["env_kwargs"] == {"split": "test"} and report["wrappers"] == [SCALE3]
    assert report["returns"]["search"]["mean"] == 3.0  # the corridor's reward of 1, scaled
    assert [row["simulations"] for row in report["sweep"]] == [0, 1] and report["ceiling"] is False
    assert cli_main(["audit", "--checkpoint", CORRIDOR, "--episodes", "2", "--wrapper", SCALE3, "--write"]) == 2
    err = capsys.readouterr().err
    assert "--write" in err and "--out" in err
    assert cli_main(["explain", "--checkpoint", CORRIDOR, "--env-kwargs", '{"split": "test"}', "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["env_id"] == "glasszero/Corridor-v0" and d["env_kwargs"] == {"split": "test"}


def test_eval_of_a_baseline_on_another_environment(tmp_path, capsys):
    path = make_agent("a2c", "CartPole-v1", seed=0).save(tmp_path / "model.zip")  # untrained: acting is enough
    assert cli_main(["eval", "--checkpoint", str(path), "--episodes", "2", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert cli_main(["eval", "--checkpoint", str(path), "--episodes", "2", "--wrapper",
                     "tests.test_env_flags:ScaleReward(scale=2.0)", "--json"]) == 0
    scaled = json.loads(capsys.readouterr().out)
    assert scaled["returns"] == pytest.approx([2 * r for r in plain["returns"]])
    assert cli_main(["eval", "--checkpoint", str(path), "--env", "glasszero/Corridor-v0"]) == 2
    assert "--env glasszero/Corridor-v0" in capsys.readouterr().err
