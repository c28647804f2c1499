"""The driver's side of distributed self-play: the actors' transitions written into the one replay.

Replay stays in the driver (with the learner), not in an actor of its own: the learner samples
from it and updates its priorities every training step, which in-process costs microseconds and
across processes would cost a round trip per step and a copy of every batch; inserting a vector
step of transitions costs far less than acting it (benchmarks/bench_scale.py). It also keeps
checkpoints and --resume exactly as in the single-process loop.

Each (worker, env) pair is one stream of episodes, linked as SelfPlay links its envs: the writer
keeps every env's last written state (`prev`) and the observation that followed it, so it can
close an episode as truncated when its actor restarted (or a run resumes) and its successor will
never arrive.

Explorer rewards that count real transitions (the visit-count family's, agent/explore.py) are
counted here, over every worker's transitions, and overwrite the actors' columns: an actor's own
counts see only its envs and die with it, where the writer's are the run's and are saved with its
state (`state_dict`'s "explorers", which a resumed run of either kind loads). The other families'
state (targets, a novelty archive) lives in each actor; what a resumed run brought is carried
over to the next checkpoint unchanged.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from agent.explore import Explorers
from agent.replay import Replay
from agent.selfplay import Transition, close_open_episodes, real_next_obs, write_transition


class ReplayWriter:
    venv = None  # no envs in this process (EZAgent.get_env)

    def __init__(self, replay: Replay, workers: int, num_envs: int, obs_shape, obs_dtype,
                 counter: Optional[Explorers] = None, carried_explorers: Optional[dict] = None):
        """counter: explorers whose intrinsic rewards (the last columns of each transition's
        aux_reward) are recounted here over every worker's transitions, or None.
        carried_explorers: without a counter, the explorer state a resumed run brought (other
        families', which live in the actors), saved again unchanged."""
        self.replay = replay
        self.counter = counter
        self._rng = np.random.default_rng(0)  # the visit-count family draws nothing; observe() takes one
        self.carried_explorers = None if counter is not None else carried_explorers
        self.prev = np.full((workers, num_envs), -1, dtype=np.int64)  # replay index of each env's last state
        self.obs = np.zeros((workers, num_envs, *obs_shape), dtype=obs_dtype)  # the observation after it
        self.episode_return = np.zeros((workers, num_envs))
        self.episode_length = np.zeros((workers, num_envs), dtype=np.int64)
        self.incarnation = [None] * workers

    def begin(self, worker: int, incarnation: str, env_steps: int) -> None:
        """Before a worker's chunk: a new incarnation (a restarted actor) started fresh episodes, so
        the ones it left open are closed as truncated."""
        if incarnation != self.incarnation[worker]:
            self.close(worker, env_steps)
            self.incarnation[worker] = incarnation

    def write(self, worker: int, t: Transition, next_obs: np.ndarray, env_steps: int) -> None:
        """One vector step of `worker`, then `next_obs` (the observations after it) is where its envs are."""
        if self.counter is not None:
            self.counter.observe(t.obs, self._rng)  # as SelfPlay.act counts: what was acted in, then the rewards
            bonus = self.counter.rewards(real_next_obs(next_obs, t.terminated | t.truncated, t.final_obs))
            users = t.aux_reward.shape[1] - bonus.shape[1]
            t.aux_reward = np.concatenate([t.aux_reward[:, :users], bonus], axis=1)
        self.prev[worker] = write_transition(self.replay, self.prev[worker], t, env_steps)
        done = t.terminated | t.truncated
        self.episode_return[worker] = np.where(done, 0.0, self.episode_return[worker] + t.reward)
        self.episode_length[worker] = np.where(done, 0, self.episode_length[worker] + 1)
        self.obs[worker] = next_obs

    def close(self, worker: int, env_steps: int) -> None:
        """Close `worker`'s open episodes as truncated (its actor died or restarted)."""
        close_open_episodes(self.replay, self.prev[worker], self.obs[worker], env_steps)
        self.prev[worker] = -1
        self.episode_return[worker] = 0.0
        self.episode_length[worker] = 0

    def state_dict(self) -> dict:
        """SelfPlay.state_dict's format over all workers' envs, without env states (they live in the
        actors): a run resumed from it, in either mode, closes these episodes as truncated."""
        flat = lambda a: a.reshape(-1, *a.shape[2:]).copy()  # noqa: E731
        return {"obs": flat(self.obs), "prev": flat(self.prev), "episode_return": flat(self.episode_return),
                "episode_length": flat(self.episode_length), "envs": None, "distributed": True,
                "explorers": self.counter.state_dict() if self.counter is not None else self.carried_explorers}
