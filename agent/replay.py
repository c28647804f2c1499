"""Prioritized replay of self-play transitions, linked into episodes.

Storage is one ring buffer over a monotone *global index* g (slot g % capacity). Every state the
agent acted in is one entry: its observation, the action taken, the reward received, the search
policy and the env step at which it was collected. Each entry points to the next state of the same
episode (`next`), so several envs can write side by side and an unroll follows pointers instead of
relying on contiguous storage. An episode's last observation gets an entry of its own (a *final*
entry: no action, never sampled as a start) so that targets can tell

    terminal   -> an absorbing state: value 0 and reward 0 from here on (the loss still applies),
    truncated  -> a real state the episode was cut at: bootstrap from its value, mask what follows.

A `next` of PENDING means the successor has not been written yet (the newest data): targets
bootstrap there, and the unroll masks the steps beyond it. Because pointers only go forward in g,
an entry that is still in the buffer never points at an overwritten one.

Frame stacks (`frame_stack` S > 1, observations [S, *frame] from gymnasium's FrameStackObservation
with its default "reset" padding, as the Atari path makes them): each entry keeps only its newest
frame and `prev`, the global index of the episode's previous state, and `observations(slots)`
rebuilds a stack by walking `prev` back S - 1 times, repeating the oldest frame it reaches: at an
episode's start that is exactly the padding (the first frame repeated), so stacks come back as the
environment showed them. The one approximation: a state whose predecessors were overwritten gets
its oldest stored frame repeated. Memory per entry is a frame, not S of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PENDING = -1  # successor not written yet
NO_NEXT = -2  # final entry of an episode (terminal or truncated)


@dataclass
class Unroll:
    """Where K+1 consecutive states of B sampled sequences live, and what is known about them.

    All arrays are [B, K+1] (actions: [B, K]). `index` is -1 where nothing is stored.
    """

    index: np.ndarray  # global index of the state at unroll step k, or -1
    acted: np.ndarray  # bool: a stored state with an action and search policy (policy loss applies)
    absorbing: np.ndarray  # bool: terminal, or after a terminal state (value/reward targets are 0)
    known: np.ndarray  # bool: acted or absorbing or a truncated final state (value loss applies)
    actions: np.ndarray  # [B, K] action applied at step k (random past the end, as in MuZero)
    rewards: np.ndarray  # [B, K] reward of the transition k -> k+1 (0 past a terminal)
    reward_mask: np.ndarray  # [B, K] bool: the reward target of transition k is known
    explore: np.ndarray  # bool: a stored state an explorer acted in (agent/explore.py)


class Replay:
    def __init__(self, capacity: int, obs_shape, num_actions: int, *, alpha: float = 0.6,
                 eps: float = 1e-6, obs_dtype=np.float32, num_aux: int = 0, frame_stack: int = 1,
                 reward_clip: float = 0.0):
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        obs_shape = tuple(int(d) for d in obs_shape)
        if frame_stack < 1 or (frame_stack > 1 and (len(obs_shape) < 2 or obs_shape[0] != frame_stack)):
            raise ValueError(f"frame_stack {frame_stack} needs observations [{frame_stack}, *frame], got shape "
                             f"{obs_shape}")
        self.capacity = int(capacity)
        self.num_actions = int(num_actions)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.frame_stack = int(frame_stack)
        self.reward_clip = float(reward_clip)  # > 0: rewards stored clipped to [-clip, clip] (Atari)
        self.obs_shape = obs_shape
        n = self.capacity
        # The observations (uint8 images stay uint8), or with frame stacks each entry's newest frame.
        stored_shape = obs_shape[1:] if frame_stack > 1 else obs_shape
        self.obs = np.zeros((n, *stored_shape), dtype=obs_dtype)
        self.prev = np.full(n, -1, dtype=np.int64)  # global index of the episode's previous state, or -1
        self.action = np.zeros(n, dtype=np.int64)
        self.reward = np.zeros(n, dtype=np.float32)
        # Rewards of extra reward functions (train.py --aux-value NAME --reward module:fn), one column each.
        self.aux_reward = np.zeros((n, num_aux), dtype=np.float32)
        self.policy = np.zeros((n, num_actions), dtype=np.float32)
        self.next = np.full(n, PENDING, dtype=np.int64)
        self.terminal = np.zeros(n, dtype=bool)  # final entry of an episode that terminated
        self.final = np.zeros(n, dtype=bool)  # final entry (terminal or truncated)
        self.explore = np.zeros(n, dtype=bool)  # acted in by an explorer, under another objective
        self.env_step = np.zeros(n, dtype=np.int64)  # when it was collected (off-policy correction)
        self.priority = np.zeros(n, dtype=np.float64)
        # Reanalyzed policy targets kept for reuse (Learner.draft): the policy a search with the
        # target network gave this state, and that network's version (-1: none kept).
        self.reanalyzed = np.zeros((n, num_actions), dtype=np.float32)
        self.reanalyzed_at = np.full(n, -1, dtype=np.int64)
        # Counts forget_reanalyzed calls, so that a batch drafted before one (the distributed loop
        # drafts ahead) does not keep its policies after it.
        self.reanalyzed_epoch = 0
        self.total = 0  # entries ever written; the valid range is [total - size, total)
        self.max_priority = 1.0

    # ------------------------------------------------------------------ writing
    @property
    def size(self) -> int:
        return min(self.total, self.capacity)

    @property
    def num_transitions(self) -> int:
        """Stored states with an action (what the buffer can be sampled at)."""
        return int(np.count_nonzero(self.priority))

    def _slots(self, count: int) -> np.ndarray:
        g = np.arange(self.total, self.total + count)
        self.total += count
        return g

    def _link(self, prev: np.ndarray, g: np.ndarray) -> None:
        """Point each live predecessor (global index >= 0 and still stored) at its successor."""
        ok = (prev >= 0) & (prev >= self.total - self.capacity)
        self.next[prev[ok] % self.capacity] = g[ok]

    def add(self, prev: np.ndarray, obs, action, reward, policy, env_step: int, aux_reward=None,
            explore=None) -> np.ndarray:
        """Write one acted state per env; link it after `prev` (-1: first state of an episode).
        `explore` [B] bool flags the states explorers acted in (default: none).

        Returns the global indices written, which the caller passes back as `prev` next time.
        New entries get the current maximum priority so that they are sampled at least once soon.
        """
        g = self._slots(len(action))
        s = g % self.capacity
        self._store_obs(s, obs, prev)
        self.action[s] = action
        self.reward[s] = np.clip(reward, -self.reward_clip, self.reward_clip) if self.reward_clip > 0 else reward
        self.aux_reward[s] = 0.0 if aux_reward is None else aux_reward
        self.policy[s] = policy
        self.next[s] = PENDING
        self.terminal[s] = False
        self.final[s] = False
        self.explore[s] = False if explore is None else explore
        self.env_step[s] = env_step
        self.priority[s] = self.max_priority
        self.reanalyzed_at[s] = -1
        self._link(np.asarray(prev), g)
        return g

    def end_episodes(self, prev: np.ndarray, final_obs, terminated, env_step: int) -> None:
        """Close the episodes whose last acted state is `prev` with their final observation."""
        g = self._slots(len(prev))
        s = g % self.capacity
        self._store_obs(s, final_obs, prev)
        self.action[s] = 0
        self.reward[s] = 0.0
        self.aux_reward[s] = 0.0
        self.policy[s] = 0.0
        self.next[s] = NO_NEXT
        self.terminal[s] = terminated
        self.final[s] = True
        self.explore[s] = False
        self.env_step[s] = env_step
        self.priority[s] = 0.0  # no action here: never the start of a sampled sequence
        self.reanalyzed_at[s] = -1
        self._link(np.asarray(prev), g)

    def _store_obs(self, s: np.ndarray, obs, prev) -> None:
        obs = np.asarray(obs)
        self.obs[s] = obs[:, -1] if self.frame_stack > 1 else obs
        self.prev[s] = prev

    def observations(self, slots: np.ndarray) -> np.ndarray:
        """The observations held in `slots` (any shape of slot indices) -> [*slots.shape, *obs_shape],
        stacks rebuilt from single frames when frame_stack > 1 (module docstring)."""
        slots = np.asarray(slots)
        if self.frame_stack == 1:
            return self.obs[slots]
        S = self.frame_stack
        out = np.empty((slots.size, *self.obs_shape), dtype=self.obs.dtype)
        cur = slots.reshape(-1)
        out[:, S - 1] = self.obs[cur]
        oldest = self.total - self.capacity
        for j in range(S - 2, -1, -1):
            p = self.prev[cur]
            live = (p >= 0) & (p >= oldest)
            cur = np.where(live, p % self.capacity, cur)
            out[:, j] = self.obs[cur]
        return out.reshape(*slots.shape, *self.obs_shape)

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, beta: float, rng: np.random.Generator):
        """Indices drawn with probability p_i^alpha / sum, and importance weights normalized to max 1."""
        p = self.priority[: self.size] ** self.alpha
        total = p.sum()
        if total <= 0:
            raise RuntimeError("replay has no transitions to sample yet")
        probs = p / total
        slots = rng.choice(self.size, size=batch_size, p=probs)
        weights = (self.num_transitions * probs[slots]) ** (-beta)
        weights = (weights / weights.max()).astype(np.float32)
        return self._global(slots), weights

    def _global(self, slots: np.ndarray) -> np.ndarray:
        """Global index of the entry currently held in each slot."""
        base = self.total - self.size  # oldest valid global index
        return base + (slots - base) % self.capacity

    def update_priorities(self, index: np.ndarray, priority: np.ndarray) -> None:
        live = index >= self.total - self.capacity  # overwritten since sampling: keep the new entry's
        pr = np.abs(priority) + self.eps
        self.priority[index[live] % self.capacity] = pr[live]
        self.max_priority = max(self.max_priority, float(pr.max()))

    def unroll(self, start: np.ndarray, steps: int, rng: np.random.Generator) -> Unroll:
        """Follow `next` pointers K=`steps` times from each sampled start state."""
        B, K = len(start), steps
        index = np.full((B, K + 1), -1, dtype=np.int64)
        acted = np.zeros((B, K + 1), dtype=bool)
        absorbing = np.zeros((B, K + 1), dtype=bool)
        known = np.zeros((B, K + 1), dtype=bool)
        actions = rng.integers(0, self.num_actions, size=(B, K))
        rewards = np.zeros((B, K), dtype=np.float32)
        reward_mask = np.zeros((B, K), dtype=bool)
        cur = start.copy()
        stored = np.ones(B, dtype=bool)  # cur is a stored entry
        after_terminal = np.zeros(B, dtype=bool)
        for k in range(K + 1):
            s = cur % self.capacity
            is_final = stored & self.final[s]
            index[:, k] = np.where(stored, cur, -1)
            acted[:, k] = stored & ~is_final
            absorbing[:, k] = after_terminal | (is_final & self.terminal[s])
            known[:, k] = stored | after_terminal
            if k == K:
                break
            a = acted[:, k]
            actions[a, k] = self.action[s[a]]
            rewards[a, k] = self.reward[s[a]]
            reward_mask[:, k] = a | absorbing[:, k]  # reward 0 from an absorbing state
            after_terminal = absorbing[:, k]
            nxt = self.next[s]
            stored = a & (nxt >= 0)
            cur = np.where(stored, nxt, 0)
        explore = acted & self.explore[np.where(index >= 0, index, 0) % self.capacity]
        return Unroll(index, acted, absorbing, known, actions, rewards, reward_mask, explore)

    # ------------------------------------------------------------------ reanalyzed targets
    def keep_reanalyzed(self, index: np.ndarray, policies: np.ndarray, version: int, epoch: int) -> None:
        """Keep `policies` [M, A] for the states at global indices `index` [M] that are still
        stored (not overwritten since they were sampled), unless what is kept was forgotten since
        `epoch` (reanalyzed_epoch when they were sampled)."""
        if epoch != self.reanalyzed_epoch:
            return
        live = index >= self.total - self.capacity
        s = index[live] % self.capacity
        self.reanalyzed[s] = policies[live]
        self.reanalyzed_at[s] = version

    def forget_reanalyzed(self) -> None:
        """Drop every kept policy (the objective or the search settings changed)."""
        self.reanalyzed_at[:] = -1
        self.reanalyzed_epoch += 1

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        keep = self.size  # the live part only: a resume file does not carry empty capacity
        return {"capacity": self.capacity, "alpha": self.alpha, "eps": self.eps, "total": self.total,
                "max_priority": self.max_priority,
                **{k: getattr(self, k)[:keep].copy() for k in self._ARRAYS}}

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"resume replay has capacity {state['capacity']}, config says {self.capacity}")
        stored = tuple(state["obs"].shape[1:])
        if stored != self.obs.shape[1:]:
            raise ValueError(f"resume replay holds observations of shape {stored} per state, this replay "
                             f"{self.obs.shape[1:]} (frame_stack {self.frame_stack}): it was written for another "
                             f"environment or wrapper, or before replay kept one frame per stacked state; start "
                             f"a new run")
        self.total, self.max_priority = int(state["total"]), float(state["max_priority"])
        for k in self._ARRAYS:
            if k in state:  # resume files written before aux rewards, explorers, `prev` or kept
                # reanalyzed policies existed lack those
                getattr(self, k)[: len(state[k])] = state[k]

    _ARRAYS = ("obs", "prev", "action", "reward", "aux_reward", "policy", "next", "terminal", "final",
               "explore", "env_step", "priority", "reanalyzed", "reanalyzed_at")
