"""envs.make / envs.make_vec: clear refusals, wrappers in order, user modules, seeding."""
import gymnasium as gym
import numpy as np
import pytest

import envs

DICT_ID = "test_envs_make/DictObs-v0"


class DictObs(gym.Env):
    """A Dict observation: the planner refuses it until it is flattened."""

    observation_space = gym.spaces.Dict({"a": gym.spaces.Box(0.0, 1.0, (2,), np.float32),
                                         "b": gym.spaces.Discrete(3)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


if DICT_ID not in gym.registry:
    gym.register(DICT_ID, entry_point=DictObs, max_episode_steps=5)


class Tag(gym.Wrapper):
    """A wrapper that only marks where it sits in the chain."""


def test_unknown_id_suggests_a_close_one():
    with pytest.raises(ValueError, match="CartPole-v1") as err:
        envs.make("CartPol-v1")
    assert "--env-module" in str(err.value)


def test_continuous_actions_refused_naming_discrete():
    with pytest.raises(ValueError, match="Discrete"):
        envs.make("Pendulum-v1")
    assert isinstance(envs.make("Pendulum-v1", check=False).action_space, gym.spaces.Box)


def test_dict_observation_refused_until_flattened():
    with pytest.raises(ValueError, match="FlattenObservation"):
        envs.make(DICT_ID)
    env = envs.make(DICT_ID, wrappers=["gymnasium.wrappers:FlattenObservation"])
    assert isinstance(env.observation_space, gym.spaces.Box) and env.observation_space.shape == (5,)


def test_wrappers_apply_in_order():
    env = envs.make(DICT_ID, wrappers=[Tag, "gymnasium.wrappers:FlattenObservation"])
    assert type(env) is gym.wrappers.FlattenObservation and type(env.env) is Tag
    env = envs.make("CartPole-v1", wrappers=["gymnasium.wrappers.FlattenObservation", Tag])
    assert type(env) is Tag and type(env.env) is gym.wrappers.FlattenObservation


@pytest.mark.parametrize("spec", ["gymnasium.wrappers:NoSuchWrapper", "no_such_pkg_xyz:Wrapper",
                                  "NoModule"])
def test_bad_wrapper_string_raises(spec):
    with pytest.raises(ValueError, match="wrapper"):
        envs.make("CartPole-v1", wrappers=[spec])


def test_env_module_missing_raises_and_present_registers(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no_such_pkg_xyz"):
        envs.make("CartPole-v1", env_module="no_such_pkg_xyz")
    (tmp_path / "user_envs_xyz.py").write_text(
        "import gymnasium as gym\n"
        "if 'UserCart-v0' not in gym.registry:\n"
        "    gym.register('UserCart-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv',"
        " max_episode_steps=50)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    env = envs.make("UserCart-v0", seed=0, env_module="user_envs_xyz")
    assert env.spec.id == "UserCart-v0"


def test_make_seeds_the_first_reset_and_the_action_space():
    a, b = envs.make("CartPole-v1", seed=3), envs.make("CartPole-v1", seed=3)
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])  # same RNG stream after seeding
    assert [a.action_space.sample() for _ in range(10)] == [b.action_space.sample() for _ in range(10)]


def test_make_vec_seeds_deterministically():
    def play(seed):
        venv = envs.make_vec("CartPole-v1", 3, seed=seed)  # resets itself: no reset(seed) here
        obs = [venv.step(venv.action_space.sample())[0] for _ in range(30)]  # past episode ends
        venv.close()
        return np.stack(obs)

    first = play(5)
    np.testing.assert_array_equal(first, play(5))
    assert not np.array_equal(first[0, 0], first[0, 1])  # copies get different seeds
    assert not np.array_equal(first, play(6))
    with pytest.raises(ValueError, match="num_envs"):
        envs.make_vec("CartPole-v1", 0, seed=0)


@pytest.mark.parametrize("env_id", ["glasszero/Corridor-v0", "glasszero/CornerGoal-v0",
                                    "glasszero/SideEffects-v0"])
def test_glasszero_ids_resolve(env_id):
    env = envs.make(env_id, seed=0, split="test")
    assert env.spec.id == env_id and env.spec.max_episode_steps
    venv = envs.make_vec(env_id, 2, seed=0, split="train")
    assert venv.observation_space.shape[0] == 2
    venv.close()
