"""Self-play: B environments stepped together, one batched search per step for all of them.

Each step writes one acted state per env into replay (observation, action, reward, the search's
visit distribution). With explorers (agent/explore.py) the last few envs search under the training
objective plus a target of their own, in a second search; their entries are flagged in replay and
their returns are not the training objective's. The vector env resets finished episodes in the same step (SAME_STEP
autoreset), so the observation it returns for a finished env already belongs to the next
episode; the finished episode's last observation comes from info["final_obs"] and closes the
episode in replay, flagged terminal or truncated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from agent.explore import Explorers
from agent.replay import Replay
from envs.snapshot import restore, snapshot
from planners.policies import plan


@dataclass
class StepReport:
    """What one self-play step produced besides the replay entries it wrote."""

    stats: Dict[str, float]  # search/root_value, search/depth, search/entropy (means over the B envs)
    finished_returns: List[float] = field(default_factory=list)  # episodes that ended in this step
    explorer_returns: List[float] = field(default_factory=list)  # the explorers' finished episodes


class SelfPlay:
    def __init__(self, venv, replay: Replay, seed: int, aux=None, explorers: Optional[Explorers] = None):
        """aux: the agent's AuxValues (agent/aux_values.py), whose rewards are stored beside each
        transition, or None. explorers: targets for the last `explorers.count` envs, or None."""
        self.venv = venv
        self.replay = replay
        self.aux = aux
        self.num_envs = venv.num_envs
        self.explorers = explorers if explorers is not None and explorers.count > 0 else None
        self.num_players = self.num_envs - (self.explorers.count if self.explorers else 0)
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Start fresh episodes in every env (envs seeded seed, seed+1, ...)."""
        self.obs, _ = self.venv.reset(seed=[int(seed) + i for i in range(self.num_envs)])
        self.prev = np.full(self.num_envs, -1, dtype=np.int64)  # replay index of each env's last state
        self.episode_return = np.zeros(self.num_envs)
        self.episode_length = np.zeros(self.num_envs, dtype=np.int64)
        self.is_explorer = np.arange(self.num_envs) >= self.num_players
        self.fresh = self.is_explorer.copy()  # explorers whose episode has no target yet

    def state_dict(self) -> dict:
        """Where every env is: its observation, its replay link, its episode so far, and the envs'
        own state as data (None when some env keeps state that is not plain data)."""
        states = [snapshot(env) for env in self.venv.envs]
        return {"obs": self.obs.copy(), "prev": self.prev.copy(), "episode_return": self.episode_return.copy(),
                "episode_length": self.episode_length.copy(), "fresh": self.fresh.copy(),
                "explorers": self.explorers.state_dict() if self.explorers else None,
                "envs": None if any(s is None for s in states) else states}

    def load_state_dict(self, state: dict, env_steps: int) -> bool:
        """Continue the saved episodes. When the envs' state was not saved, the episodes still open
        in replay are closed as truncated at their last observation (their successors will never
        arrive) and the fresh episodes `reset` started go on; returns whether the envs continued."""
        if state["envs"] is not None:
            for env, env_state in zip(self.venv.envs, state["envs"]):
                restore(env, env_state)
            self.obs, self.prev = np.array(state["obs"]), np.array(state["prev"])
            self.episode_return = np.array(state["episode_return"])
            self.episode_length = np.array(state["episode_length"])
            if self.explorers is not None and state.get("explorers") is not None:
                self.fresh = np.array(state["fresh"])
                self.explorers.load_state_dict(state["explorers"])
            return True
        open_ = np.asarray(state["prev"]) >= 0
        if open_.any():
            self.replay.end_episodes(np.asarray(state["prev"])[open_], np.asarray(state["obs"])[open_],
                                     np.zeros(int(open_.sum()), bool), env_steps)
        return False

    def step(self, model, objective, search_config, temperature: float, rng: np.random.Generator,
             env_steps: int) -> StepReport:
        """Act once in every env with one batched search (two with explorers: theirs maximizes
        their targets too), and write what happened into replay."""
        m = self.num_players
        result = plan(model, objective, self.obs[:m], search_config, rng=rng, add_noise=True,
                      temperature=temperature)
        actions, weights = result.action, result.action_weights
        if self.explorers is not None:
            self.explorers.observe(self.obs)
            self.explorers.redraw(self.fresh[m:], rng)
            self.fresh[m:] = False
            explored = plan(model, self.explorers.objective(objective), self.obs[m:], search_config, rng=rng,
                            add_noise=True, temperature=temperature)
            actions = np.concatenate([actions, explored.action])
            weights = np.concatenate([weights, explored.action_weights])
        next_obs, reward, terminated, truncated, info = self.venv.step(actions)
        done = terminated | truncated
        aux: Optional[np.ndarray] = None
        if self.aux is not None:
            real_next = np.array(next_obs, copy=True)  # the finished episodes' own last observations
            for i in np.flatnonzero(done):
                real_next[i] = info["final_obs"][i]
            aux = self.aux.rewards(self.obs, actions, reward, real_next, terminated)
        written = self.replay.add(self.prev, self.obs, actions, reward, weights, env_steps,
                                  aux_reward=aux, explore=self.is_explorer)

        self.episode_return += reward
        self.episode_length += 1
        finished: List[float] = []
        explorer_returns: List[float] = []
        if done.any():
            final_obs = np.stack([info["final_obs"][i] for i in np.flatnonzero(done)])
            self.replay.end_episodes(written[done], final_obs, terminated[done], env_steps)
            finished = self.episode_return[done & ~self.is_explorer].tolist()
            explorer_returns = self.episode_return[done & self.is_explorer].tolist()
            self.fresh |= done & self.is_explorer
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
        self.prev = np.where(done, -1, written)
        self.obs = next_obs

        p = np.clip(result.action_weights, 1e-12, 1.0)  # the players' searches (the training objective's)
        return StepReport({"search/root_value": float(np.mean(result.root_value)),
                           "search/depth": float(np.mean(result.max_depth)),
                           "search/entropy": float(np.mean(-(p * np.log(p)).sum(-1)))}, finished,
                          explorer_returns)
