"""Self-play: B environments stepped together, one batched search per step for all of them.

Each step writes one acted state per env into replay (observation, action, reward, the search's
visit distribution). The vector env resets finished episodes in the same step (SAME_STEP
autoreset), so the observation it returns for a finished env already belongs to the next
episode; the finished episode's last observation comes from info["final_obs"] and closes the
episode in replay, flagged terminal or truncated.
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch

from agent.replay import Replay
from planners.search import search


class SelfPlay:
    def __init__(self, venv, replay: Replay, seed: int, aux_rewards: Sequence[Tuple[str, Callable]] = ()):
        """aux_rewards: (name, fn) pairs; fn(obs, action, reward, next_obs, terminated) -> [B] is
        stored beside each transition for the auxiliary value heads (agent/learner.py)."""
        self.venv = venv
        self.replay = replay
        self.aux_rewards = list(aux_rewards)
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
        done = terminated | truncated
        aux = None
        if self.aux_rewards:
            real_next = np.array(next_obs, copy=True)  # the finished episodes' own last observations
            for i in np.flatnonzero(done):
                real_next[i] = info["final_obs"][i]
            aux = np.stack([aux_reward(name, fn, self.obs, actions, reward, real_next, terminated)
                            for name, fn in self.aux_rewards], axis=1)
        written = self.replay.add(self.prev, self.obs, actions, reward, result.policy_target, env_steps,
                                  aux_reward=aux)

        self.episode_return += reward
        self.episode_length += 1
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


def aux_reward(name: str, fn: Callable, obs, action, reward, next_obs, terminated) -> np.ndarray:
    """fn's rewards for one batch of B transitions, checked: float, shape [B], finite."""
    B = len(action)
    try:
        out = np.asarray(fn(obs, action, reward, next_obs, terminated), dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - re-raised with the function named
        raise ValueError(f"aux reward function of --aux-value {name} raised {type(e).__name__}: {e} "
                         f"(it gets batched numpy arrays obs [B, ...], action [B], reward [B], next_obs "
                         f"[B, ...], terminated [B] and must return [B] floats)") from e
    if out.shape == (B, 1):
        out = out[:, 0]
    if out.shape != (B,):
        raise ValueError(f"aux reward function of --aux-value {name} returned shape {out.shape} for a batch "
                         f"of {B} transitions; it must return one float per transition, shape ({B},)")
    if not np.isfinite(out).all():
        raise ValueError(f"aux reward function of --aux-value {name} returned NaN or inf: {out.tolist()}")
    return out
