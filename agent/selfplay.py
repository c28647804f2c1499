"""Self-play: B environments stepped together, one batched search per step for all of them.

Each step writes one acted state per env into replay (observation, action, reward, the search's
visit distribution). The vector env resets finished episodes in the same step (SAME_STEP
autoreset), so the observation it returns for a finished env already belongs to the next
episode; the finished episode's last observation comes from info["final_obs"] and closes the
episode in replay, flagged terminal or truncated.
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch

from agent.replay import Replay
from planners.search import search


class SelfPlay:
    def __init__(self, venv, replay: Replay, seed: int):
        self.venv = venv
        self.replay = replay
        self.num_envs = venv.num_envs
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Start fresh episodes in every env (envs seeded seed, seed+1, ...)."""
        self.obs, _ = self.venv.reset(seed=[int(seed) + i for i in range(self.num_envs)])
        self.prev = np.full(self.num_envs, -1, dtype=np.int64)  # replay index of each env's last state
        self.episode_return = np.zeros(self.num_envs)
        self.episode_length = np.zeros(self.num_envs, dtype=np.int64)

    def step(self, model, objective, search_config, temperature: float, rng: np.random.Generator,
             env_steps: int) -> dict:
        """Act once in every env; returns search statistics and the episodes that finished."""
        with torch.no_grad():
            root = model.initial_inference(self.obs)
            result = search(model, objective, root, search_config, rng=rng, add_noise=True,
                            temperature=temperature)
        actions = result.action
        next_obs, reward, terminated, truncated, info = self.venv.step(actions)
        written = self.replay.add(self.prev, self.obs, actions, reward, result.policy_target, env_steps)

        self.episode_return += reward
        self.episode_length += 1
        done = terminated | truncated
        finished: List[float] = []
        if done.any():
            final_obs = np.stack([info["final_obs"][i] for i in np.flatnonzero(done)])
            self.replay.end_episodes(written[done], final_obs, terminated[done], env_steps)
            finished = self.episode_return[done].tolist()
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
        self.prev = np.where(done, -1, written)
        self.obs = next_obs

        p = np.clip(result.policy_target, 1e-12, 1.0)
        return {"search/root_value": float(np.mean(result.root_value)),
                "search/depth": float(np.mean(result.max_depth)),
                "search/entropy": float(np.mean(-(p * np.log(p)).sum(-1))),
                "episodes": finished}
