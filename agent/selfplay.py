"""Self-play: B environments stepped together, one batched search per step for all of them.

Each step writes one acted state per env into replay (observation, action, reward, the search's
policy target: its visit distribution or improved policy, SearchConfig.policy_target). With
explorers (agent/explore.py) the last few envs search under the training objective plus a target of
their own, in a second search; their entries are flagged in replay and their returns are not the
training objective's. The vector env resets finished episodes in the same step (SAME_STEP
autoreset), so the observation it returns for a finished env already belongs to the next
episode; the finished episode's last observation comes from info["final_obs"] and closes the
episode in replay, flagged terminal or truncated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

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


@dataclass
class Transition:
    """One vector step as self-play saw it: what `write_transition` puts into replay. Plain arrays,
    so that a self-play process can hand it to another one (agent/distributed/)."""

    obs: np.ndarray  # [B, *obs] the observations acted in
    action: np.ndarray  # [B]
    reward: np.ndarray  # [B]
    policy: np.ndarray  # [B, A] the search's policy target (PolicyOutput.action_weights)
    terminated: np.ndarray  # [B] bool
    truncated: np.ndarray  # [B] bool
    final_obs: np.ndarray  # [D, *obs] last observations of the D episodes that ended, in env order
    aux_reward: Optional[np.ndarray] = None  # [B, num_aux] or None
    explore: Optional[np.ndarray] = None  # [B] bool: acted in by an explorer (agent/explore.py)


def write_transition(replay: Replay, prev: np.ndarray, t: Transition, env_step: int) -> np.ndarray:
    """Write one vector step into replay, linked after `prev` (each env's last written state, -1
    at an episode's start), and close the episodes that ended. Returns the new `prev`."""
    written = replay.add(prev, t.obs, t.action, t.reward, t.policy, env_step, aux_reward=t.aux_reward,
                         explore=t.explore)
    done = t.terminated | t.truncated
    if done.any():
        replay.end_episodes(written[done], t.final_obs, t.terminated[done], env_step)
    return np.where(done, -1, written)


def real_next_obs(next_obs: np.ndarray, done: np.ndarray, final_obs: np.ndarray) -> np.ndarray:
    """[B, *obs] where each env's transition led: `next_obs`, except that a finished episode's is
    its own last observation (final_obs, [D, *obs] in env order), not the next episode's first."""
    real = np.array(next_obs, copy=True)
    real[done] = final_obs
    return real


def close_open_episodes(replay: Replay, prev: np.ndarray, obs: np.ndarray, env_steps: int) -> None:
    """Close as truncated the episodes whose last written state is `prev` (>= 0), at the
    observation `obs` that followed it: their successors will never arrive."""
    open_ = np.asarray(prev) >= 0
    if open_.any():
        replay.end_episodes(np.asarray(prev)[open_], np.asarray(obs)[open_], np.zeros(int(open_.sum()), bool),
                            env_steps)


class SelfPlay:
    def __init__(self, venv, replay: Optional[Replay], seed: int, aux=None, explorers: Optional[Explorers] = None):
        """replay: where `step` writes (None for a self-play process that only `act`s and hands its
        transitions on). aux: the agent's AuxValues (agent/aux_values.py), whose rewards are stored
        beside each transition, or None. explorers: targets for the last `explorers.count` envs, or None."""
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
        if self.explorers is not None and state.get("explorers") is not None:  # what they have seen, either way
            self.explorers.load_state_dict(state["explorers"])
        if state["envs"] is not None:
            for env, env_state in zip(self.venv.envs, state["envs"]):
                restore(env, env_state)
            self.obs, self.prev = np.array(state["obs"]), np.array(state["prev"])
            self.episode_return = np.array(state["episode_return"])
            self.episode_length = np.array(state["episode_length"])
            if self.explorers is not None and state.get("explorers") is not None:
                self.fresh = np.array(state["fresh"])  # their episodes go on with their targets
            return True
        close_open_episodes(self.replay, state["prev"], state["obs"], env_steps)
        return False

    def step(self, model, objective, search_config, temperature: float, rng: np.random.Generator,
             env_steps: int) -> StepReport:
        """Act once in every env with one batched search (two with explorers), and write what
        happened into replay."""
        transition, report = self.act(model, objective, search_config, temperature, rng)
        self.prev = write_transition(self.replay, self.prev, transition, env_steps)
        return report

    def act(self, model, objective, search_config, temperature: float,
            rng: np.random.Generator) -> Tuple[Transition, StepReport]:
        """Act once in every env with one batched search (with explorers, a second one for them
        under their targets); returns what happened, for `write_transition` (here or in another
        process). Leaves `prev`, the replay links, alone."""
        m = self.num_players
        result = plan(model, objective, self.obs[:m], search_config, rng=rng, add_noise=True,
                      temperature=temperature)
        actions, weights = result.action, result.action_weights
        if self.explorers is not None:
            self.explorers.observe(self.obs, rng)
            self.explorers.redraw(self.fresh[m:], rng)
            self.fresh[m:] = False
            explored = plan(model, self.explorers.objective(objective), self.obs[m:], search_config, rng=rng,
                            add_noise=True, temperature=temperature)
            actions = np.concatenate([actions, explored.action])
            weights = np.concatenate([weights, explored.action_weights])
        next_obs, reward, terminated, truncated, info = self.venv.step(actions)
        done = terminated | truncated
        final_obs = (np.stack([info["final_obs"][i] for i in np.flatnonzero(done)]) if done.any()
                     else np.zeros((0, *self.obs.shape[1:]), dtype=self.obs.dtype))
        aux: Optional[np.ndarray] = None
        if self.aux is not None:  # the user's reward functions' columns, then the explorers' own
            real_next = real_next_obs(next_obs, done, final_obs)
            aux = self.aux.rewards(self.obs, actions, reward, real_next, terminated)
            if self.aux.internal:
                if self.explorers is None:
                    raise ValueError(f"the agent trains the explorers' heads {list(self.aux.internal)} but this "
                                     f"self-play has no explorers to reward them")
                aux = np.concatenate([aux, self.explorers.rewards(real_next)], axis=1)
                assert aux.shape[1] == len(self.aux.names), (aux.shape, self.aux.names)
        transition = Transition(self.obs, actions, reward, weights, terminated, truncated, final_obs, aux,
                                self.is_explorer.copy())

        self.episode_return += reward
        self.episode_length += 1
        finished: List[float] = []
        explorer_returns: List[float] = []
        if done.any():
            finished = self.episode_return[done & ~self.is_explorer].tolist()
            explorer_returns = self.episode_return[done & self.is_explorer].tolist()
            self.fresh |= done & self.is_explorer
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
        self.obs = next_obs

        p = np.clip(result.action_weights, 1e-12, 1.0)  # the players' searches (the training objective's)
        return transition, StepReport({"search/root_value": float(np.mean(result.root_value)),
                                       "search/depth": float(np.mean(result.max_depth)),
                                       "search/entropy": float(np.mean(-(p * np.log(p)).sum(-1)))}, finished,
                                      explorer_returns)
