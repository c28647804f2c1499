"""Atari (envs/atari.py) and what it needs from the rest: replay that keeps one frame per state and
rebuilds the stacks, rewards clipped for training only. The Atari game itself runs only where
ale-py is installed (the `atari` extra); the storage tests need nothing."""
import importlib.util

import gymnasium as gym
import numpy as np
import pytest

import envs
from agent.replay import Replay


class Counter(gym.Env):
    """Frames [2, 3] uint8 that show the step count (first reset: 10, 20, ... per seed offset)."""

    observation_space = gym.spaces.Box(0, 255, (2, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length=5):
        self.length, self.t, self.base = length, 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.base = (self.base + 50) % 200
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        return self._frame(), 2.5 if action else -3.0, self.t >= self.length, False, {}

    def _frame(self):
        return np.full((2, 3), self.base + self.t, np.uint8)


def _stacked(length=5, stack=3):
    return gym.wrappers.FrameStackObservation(Counter(length), stack)


def _play(replay, env, episodes, rng):
    """Write `episodes` episodes into replay; return (slot, the stack the env showed) per state."""
    seen = []
    for _ in range(episodes):
        obs, _ = env.reset()
        prev = np.array([-1])
        while True:
            action = int(rng.integers(2))
            g = replay.add(prev, obs[None], np.array([action]), np.array([1.0]), np.full((1, 2), 0.5), 0)
            seen.append((int(g[0]), obs.copy()))
            obs, reward, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                replay.end_episodes(g, obs[None], np.array([terminated]), 0)
                seen.append((replay.total - 1, obs.copy()))
                break
            prev = g
    return seen


def test_frame_stack_is_found_in_the_wrappers():
    assert envs.frame_stack_of(_stacked(stack=3)) == 3
    assert envs.frame_stack_of(Counter()) == 1
    zeros = gym.wrappers.FrameStackObservation(Counter(), 3, padding_type="zero")
    assert envs.frame_stack_of(zeros) == 1  # padding replay cannot rebuild: stored whole
    above = gym.wrappers.FlattenObservation(_stacked(stack=3))
    assert envs.frame_stack_of(above) == 1  # a wrapper over the stack may reshape or mix it: stored whole


def test_replay_rebuilds_every_stack_from_one_frame_per_state():
    env = _stacked(length=5, stack=3)
    replay = Replay(100, (3, 2, 3), 2, obs_dtype=np.uint8, frame_stack=3)
    seen = _play(replay, env, 4, np.random.default_rng(0))
    assert replay.obs.shape == (100, 2, 3)  # one frame per state, not three
    slots = np.array([g % replay.capacity for g, _ in seen])
    rebuilt = replay.observations(slots)
    for (g, shown), got in zip(seen, rebuilt):
        np.testing.assert_array_equal(got, shown, err_msg=f"state {g}")
    # any shape of slots, e.g. an unroll's [B, K+1]
    assert replay.observations(slots[:6].reshape(2, 3)).shape == (2, 3, 3, 2, 3)


def test_a_state_whose_predecessors_were_overwritten_repeats_its_oldest_stored_frame():
    env = _stacked(length=8, stack=3)
    replay = Replay(4, (3, 2, 3), 2, obs_dtype=np.uint8, frame_stack=3)
    seen = _play(replay, env, 1, np.random.default_rng(0))
    g, shown = seen[-1]  # the final state: its two predecessors are still stored
    np.testing.assert_array_equal(replay.observations(np.array([g % 4]))[0], shown)
    g, shown = seen[-4]  # the oldest stored state: its predecessors are gone, its own frame stands in
    np.testing.assert_array_equal(replay.observations(np.array([g % 4]))[0], np.stack([shown[-1]] * 3))
    g, shown = seen[-3]  # one predecessor left: the oldest stored frame is repeated once more
    oldest = seen[-4][1][-1]
    np.testing.assert_array_equal(replay.observations(np.array([g % 4]))[0], np.stack([oldest, oldest, shown[-1]]))


def test_frame_stacked_replay_resumes_from_its_state_dict():
    env = _stacked(length=5, stack=3)
    replay = Replay(50, (3, 2, 3), 2, obs_dtype=np.uint8, frame_stack=3)
    seen = _play(replay, env, 3, np.random.default_rng(1))
    again = Replay(50, (3, 2, 3), 2, obs_dtype=np.uint8, frame_stack=3)
    again.load_state_dict(replay.state_dict())
    slots = np.array([g % 50 for g, _ in seen])
    np.testing.assert_array_equal(again.observations(slots), replay.observations(slots))


def test_a_replay_of_whole_stacks_is_refused_by_a_frame_replay_with_a_clear_error():
    whole = Replay(10, (3, 2, 3), 2, obs_dtype=np.uint8)
    _play(whole, _stacked(stack=3), 1, np.random.default_rng(0))
    frames = Replay(10, (3, 2, 3), 2, obs_dtype=np.uint8, frame_stack=3)
    with pytest.raises(ValueError, match="start a new run"):
        frames.load_state_dict(whole.state_dict())


def test_rewards_are_stored_clipped_only_when_asked():
    clipped = Replay(10, (2,), 2, reward_clip=1.0)
    plain = Replay(10, (2,), 2)
    for r in (clipped, plain):
        r.add(np.array([-1, -1]), np.zeros((2, 2)), np.array([0, 1]), np.array([2.5, -3.0]), np.full((2, 2), 0.5), 0)
    assert clipped.reward[:2].tolist() == [1.0, -1.0]
    assert plain.reward[:2].tolist() == [2.5, -3.0]


def test_a_frame_stack_must_match_the_observation():
    with pytest.raises(ValueError, match="frame_stack 4 needs observations"):
        Replay(10, (3, 8, 8), 2, frame_stack=4)


needs_ale = pytest.mark.skipif(importlib.util.find_spec("ale_py") is None or importlib.util.find_spec("cv2") is None,
                               reason='Atari needs the extra: pip install -e ".[atari]"')


@needs_ale
def test_atari_ids_get_the_atari_100k_preprocessing():
    env = envs.make("ALE/Pong-v5", 0)
    assert env.observation_space.shape == (4, 96, 96) and env.observation_space.dtype == np.uint8
    assert envs.frame_stack_of(env) == 4
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0  # no sticky actions
    with pytest.raises(ValueError, match="frameskip"):
        envs.make("ALE/Pong-v5", 0, frameskip=4)


@needs_ale
def test_pong_trains_end_to_end_and_resumes(tmp_path):
    from agent.ez import EZAgent
    tiny = {"net.conv_channels": 8, "net.projection_hidden": 32, "net.projection_dim": 32,
            "net.projection_head_hidden": 16, "net.value_support_size": 10, "net.reward_support_size": 5,
            "search.num_simulations": 3, "batch_size": 4, "num_envs": 2, "learning_starts": 16,
            "unroll_steps": 2, "replay_capacity": 500}
    agent = EZAgent("ALE/Pong-v5", tiny, seed=0, device="cpu")
    assert agent.config.reward_clip == 1.0 and agent.model.family == "conv"
    agent.learn(40)
    assert agent.replay.frame_stack == 4 and agent.replay.obs.shape[1:] == (96, 96)
    assert agent.learner.train_steps > 0
    path = agent.save_resume(tmp_path / "resume.pt")
    again = EZAgent.load(path, device="cpu")
    slots = np.arange(agent.replay.size)
    np.testing.assert_array_equal(again.replay.observations(slots), agent.replay.observations(slots))
    # The frame decoder trained along (a probe), so the same checkpoint takes an objective over
    # predicted frames ([stack, 24, 24] scaled by 1/255) with no retraining.
    assert "loss/reconstruction" in agent._last_stats
    from planners.objectives import ObservationValue
    again.set_objective(ObservationValue(lambda frames: frames[:, -1, :, 12:].mean(dim=(1, 2))))
    obs, _ = envs.make("ALE/Pong-v5", 0).reset(seed=0)
    assert again.predict(obs)[0] in range(again.num_actions)
    assert "predicted obs" in again.explain(obs)["text"]


TINY = {"net.conv_channels": 8, "net.projection_hidden": 32, "net.projection_dim": 32,
        "net.projection_head_hidden": 16, "net.value_support_size": 10, "net.reward_support_size": 5,
        "search.num_simulations": 3, "batch_size": 4, "num_envs": 2, "learning_starts": 16,
        "unroll_steps": 2, "replay_capacity": 500}


@needs_ale
def test_a_pixel_checkpoint_saved_before_the_frame_decoder_loads_without_one(tmp_path):
    from agent.checkpoint import atomic_save, load as load_checkpoint
    from agent.ez import EZAgent
    agent = EZAgent("ALE/Pong-v5", TINY, seed=0, device="cpu")
    payload = load_checkpoint(agent.save(tmp_path / "model.pt"))
    payload["model"] = {k: v for k, v in payload["model"].items() if not k.startswith("decoder.")}
    atomic_save(payload, tmp_path / "old.pt")  # as written when pixel models had no decoder
    old = EZAgent.load(tmp_path / "old.pt", device="cpu")
    assert not old.model.has_decoder and agent.model.has_decoder


@needs_ale
def test_explorers_are_refused_for_pixel_models_naming_the_flag():
    from agent.ez import EZAgent
    with pytest.raises(ValueError, match="explore_fraction"):
        EZAgent("ALE/Pong-v5", {**TINY, "explore_fraction": 0.5}, seed=0, device="cpu")
