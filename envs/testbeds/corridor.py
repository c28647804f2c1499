"""glasszero/Corridor-v0: a one-dimensional corridor with a rewarded left end."""
from __future__ import annotations

from typing import Optional

import gymnasium as gym
import numpy as np

from envs.testbeds.common import check_render_mode, check_split, grid_image


class Corridor(gym.Env):
    """Cells 0..length-1; the trained reward lives at the LEFT end, the right end pays nothing.

    It tests that swapping the objective changes behaviour with no retraining: a model trained on
    this reward walks left, while a hand-written value over observations such as
    `lambda obs: obs[:, 0]` (obs[0] is the position scaled to [-1, 1]) makes the search walk right.
    Actions: 0 = left, 1 = right (walking into a wall leaves the position unchanged). Reward: +1 on
    entering cell 0, minus `step_cost` on every step; both ends terminate the episode.
    Observation (float32, length+1): [position scaled to [-1, 1], one-hot of position].
    Splits: "train" always starts in the middle cell; "test" starts in a uniformly random interior
    cell, so a policy that memorized "the first few actions from the middle" is exposed.
    info: 'position', 'at_left_end', 'at_right_end'. Optimal return from the middle of the default
    corridor (length 7): 1 - 3 * step_cost (= 1.0 with the default step_cost 0).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, length: int = 7, split: str = "train", step_cost: float = 0.0,
                 render_mode: Optional[str] = None):
        if length < 3:
            raise ValueError(f"length must be >= 3 (two ends and a middle), got {length}")
        self.length, self.split, self.step_cost = int(length), check_split(split), float(step_cost)
        self.render_mode = check_render_mode(render_mode)
        self.action_space = gym.spaces.Discrete(2)
        low = np.zeros(self.length + 1, np.float32)
        low[0] = -1.0
        self.observation_space = gym.spaces.Box(low, np.ones(self.length + 1, np.float32),
                                                dtype=np.float32)
        self.position = self.length // 2

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length + 1, np.float32)
        obs[0] = 2.0 * self.position / (self.length - 1) - 1.0
        obs[1 + self.position] = 1.0
        return obs

    def _info(self) -> dict:
        return {"position": self.position, "at_left_end": self.position == 0,
                "at_right_end": self.position == self.length - 1}

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        if self.split == "train":
            self.position = self.length // 2
        else:
            self.position = int(self.np_random.integers(1, self.length - 1))
        return self._obs(), self._info()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        move = 1 if int(action) == 1 else -1
        self.position = int(np.clip(self.position + move, 0, self.length - 1))
        at_left, at_right = self.position == 0, self.position == self.length - 1
        reward = (1.0 if at_left else 0.0) - self.step_cost
        return self._obs(), reward, at_left or at_right, False, self._info()

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return grid_image(1, self.length, [((0, 0), (0, 160, 0), 0),  # rewarded left end
                                           ((0, self.length - 1), (110, 110, 110), 0),  # unrewarded
                                           ((0, self.position), (220, 40, 40), 2)])  # the agent
