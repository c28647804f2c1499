"""n-step value targets with EfficientZero's off-policy correction.

    z_t = r_t + g r_{t+1} + ... + g^{h-1} r_{t+h-1} + g^h V_target(s_{t+h})

The walk stops early at an episode end: a *terminal* state contributes no bootstrap (its value is
0, absorbing), a *truncated* one (time limit) is bootstrapped from its value, and so is the newest
stored state whose successor has not arrived yet. V_target is the target network's value (cheaper
than EfficientZero's fresh search of the bootstrap state, and equally stale-robust once the target
network is refreshed regularly), or under AgentConfig.value_bootstrap="greedy-q" the best one-step
lookahead max_a r(s, a) + g V(s') (agent/learner.py `greedy_q_values`); which one is the caller's
`bootstrap`.

Off-policy correction: data collected long ago by an older policy says less about the current
policy's returns, so its horizon shrinks with age. We use EfficientZero's rule measured in
environment steps,

    h = clip(n - floor(age / correction_interval), 1, n),   age = env_steps_now - env_step_collected.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from agent.replay import Replay, Unroll


def td_horizon(age: np.ndarray, td_steps: int, correction_interval: int) -> np.ndarray:
    """EfficientZero's shorter TD horizon for older data (correction_interval <= 0 turns it off)."""
    if correction_interval <= 0:
        return np.full(np.shape(age), td_steps, dtype=np.int64)
    return np.clip(td_steps - np.asarray(age) // correction_interval, 1, td_steps).astype(np.int64)


def value_targets(replay: Replay, unroll: Unroll, *, td_steps: int, discount: float, env_steps: int,
                  correction_interval: int, bootstrap: Callable[[np.ndarray], np.ndarray],
                  rewards: Optional[np.ndarray] = None):
    """Value targets [B, K+1] and their loss mask for every state of an unroll.

    `bootstrap(obs_batch) -> values` is the target network's value of the states it is given.
    Absorbing states (at or after a terminal) get target 0 with the loss on; states past a
    truncation or past the newest data are masked out. `rewards` (one per replay slot) replaces the
    environment's reward, e.g. a column of `replay.aux_reward` for an auxiliary value head.
    """
    rewards = replay.reward if rewards is None else rewards
    shape = unroll.index.shape
    idx = unroll.index.reshape(-1)
    stored = idx >= 0
    cur = np.where(stored, idx, 0)
    s = cur % replay.capacity
    horizon = td_horizon(env_steps - replay.env_step[s], td_steps, correction_interval)
    ret = np.zeros(idx.shape, dtype=np.float64)
    scale = np.ones(idx.shape, dtype=np.float64)  # discount^(steps walked)
    walking = stored & ~replay.final[s]
    for i in range(td_steps):
        nxt = replay.next[s]
        step = walking & (i < horizon) & (nxt >= 0)  # PENDING: bootstrap where we stand
        ret[step] += scale[step] * rewards[s[step]]
        scale[step] *= discount
        cur[step] = nxt[step]
        s = cur % replay.capacity
        walking = step & ~replay.final[s]
    boot = stored & ~replay.terminal[s]
    if boot.any():
        ret[boot] += scale[boot] * bootstrap(replay.observations(s[boot]))
    return ret.reshape(shape).astype(np.float32), unroll.known.copy()
