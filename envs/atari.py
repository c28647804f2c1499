"""Atari through the Arcade Learning Environment (`pip install -e ".[atari]"`): the Atari 100k
benchmark's conventions, applied by `envs.make` to every `ALE/...` id.

    gym.make(id, frameskip=1, repeat_action_probability=0.0, full_action_space=False)
    AtariPreprocessing(noop_max=30, frame_skip=4, screen_size=96, grayscale_obs=True,
                       terminal_on_life_loss=False)      max-pooled last two frames of each skip
    FrameStackObservation(4)                            observations uint8 [4, 96, 96]

- No sticky actions (repeat_action_probability 0; ALE v5's default is 0.25): the Atari 100k
  benchmark (SimPLe, CURL, EfficientZero) is defined without them. Pass
  `--env-kwargs '{"repeat_action_probability": 0.25}'` for the v5 protocol instead.
- Rewards are clipped to [-1, 1] for training only (AgentConfig.reward_clip, set by the Atari
  presets): replay stores clipped rewards, while episode returns and evaluations report the game's
  own score.
- 96x96 grayscale frames stacked 4 deep, and replay stores each frame once (agent/replay.py:
  frame stacks), so 100k steps take about 0.9 GB, not 3.4.
- An episode is a whole game, all lives: it ends only at game over, in training as in evaluation.

Where this differs from EfficientZero's Atari runs: it stacks RGB frames (12 channels; one
channel per frame here keeps a step at 9 KB), and it trains on episodes that end at each lost life
(EpisodicLifeEnv) capped at 12,000 frames, evaluating on whole games. Its networks and discount
are the preset's (agent/config.py, atari_defaults).
"""
from __future__ import annotations

import gymnasium as gym

PREFIX = "ALE/"
FRAME_STACK = 4
SCREEN = 96
EXTRA = 'pip install -e ".[atari]"'


def is_atari_env(env_id: str) -> bool:
    return str(env_id).startswith(PREFIX)


def require_ale() -> None:
    """Register the ALE ids, or say which extra installs them."""
    try:
        import ale_py
    except ImportError as e:
        raise ImportError(f"Atari ids ({PREFIX}...) need ale-py: {EXTRA}") from e
    gym.register_envs(ale_py)


def make(env_id: str, **kwargs) -> gym.Env:
    """The preprocessed, frame-stacked environment of the module docstring; `kwargs` go to
    gym.make over the defaults there (frameskip must stay 1: AtariPreprocessing skips frames)."""
    settings = {"repeat_action_probability": 0.0, "full_action_space": False, **kwargs}
    if settings.get("frameskip", 1) != 1:
        raise ValueError(f"{env_id}: frameskip={settings['frameskip']} - frames are skipped by AtariPreprocessing "
                         f"(4, max-pooled); leave frameskip out of --env-kwargs")
    settings["frameskip"] = 1
    env = gym.make(env_id, **settings)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=SCREEN, grayscale_obs=True,
                                          terminal_on_life_loss=False, scale_obs=False)
    return gym.wrappers.FrameStackObservation(env, FRAME_STACK)


def frame_stack_of(env: gym.Env) -> int:
    """The depth of `env`'s frame stack when `env` itself is a FrameStackObservation with the
    default "reset" padding (what replay's frame storage rebuilds exactly), else 1. Only the
    outermost wrapper counts: one above the stack (a user's --wrapper) may reshape or mix its
    frames, and then replay stores observations whole."""
    if isinstance(env, gym.wrappers.FrameStackObservation):
        padding = env.padding_type
        return int(env.stack_size) if isinstance(padding, str) and padding == "reset" else 1
    return 1
