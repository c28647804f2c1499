"""Exact models of small deterministic MDPs, for testing the search against known answers.

An `ExactModel` implements the Model interface (`initial_inference(obs)`,
`recurrent_inference(latent, action)`, both returning `nets.output.ModelOutput`) from tables, so
that the search sees the true dynamics. Several MDPs share one model: their states are laid side by
side in one global state space, the latent is the one-hot vector of the global state, and the
observation is the global start-state index of each row. Each row of a batch can therefore be a
different MDP (with a different optimal action).

Every MDP has `NUM_ACTIONS` actions; the ones it does not use are illegal (`action_mask`). To make
a search that breaks the rules visible, an illegal action and any action out of a terminal state
pay `BAIT` (a huge reward): a search that took one would love it and keep choosing it.

MDPs (all with legal-action labels shuffled by `perm`, so that the optimal action differs by row):
    chain(n)         right x n pays 1 at the end; "quit" pays 0.2 at once and ends. Optimal: right.
    bandit_trap()    "safe" pays 0.5 and ends; "trap" pays 1 then -1 per step forever; "zero" pays
                     0 and ends. Greedy on reward takes the trap. Optimal: safe (horizon >= 2).
    two_step()       "early" pays 1 then nothing; "late" pays 0 then 3; "half" pays 0.5 and ends.
                     Greedy on reward takes early. Optimal: late.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch

from nets.output import ModelOutput

NUM_ACTIONS = 4
BAIT = 100.0


@dataclass
class MDP:
    """A deterministic MDP over states 0..S-1 with start state 0, written with named actions."""

    name: str
    actions: List[str]  # the MDP's own actions, in internal order (at most NUM_ACTIONS)
    num_states: int
    # (state, action name) -> (next state, reward); a missing entry is an illegal action.
    transitions: dict
    terminal: Sequence[int]
    optimal: str  # optimal action name at the start state
    greedy: str  # action with the best immediate reward at the start state
    value: Optional[np.ndarray] = None  # [S] value estimate the model reports (default 0)
    logits: Optional[np.ndarray] = None  # [S, NUM_ACTIONS] policy logits in *external* labels
    perm: List[int] = field(default_factory=lambda: list(range(NUM_ACTIONS)))  # internal -> label

    def label(self, name: str) -> int:
        """The external action index (what the search sees) of an action name."""
        return self.perm[self.actions.index(name)]

    @property
    def optimal_action(self) -> int:
        return self.label(self.optimal)

    @property
    def greedy_action(self) -> int:
        return self.label(self.greedy)

    def shuffled(self, rng: np.random.Generator) -> "MDP":
        """The same MDP with its actions put on random external labels."""
        return MDP(self.name, self.actions, self.num_states, self.transitions, self.terminal,
                   self.optimal, self.greedy, self.value, self.logits,
                   [int(x) for x in rng.permutation(NUM_ACTIONS)])


def chain(n: int = 3) -> MDP:
    t = {}
    for s in range(n):
        t[s, "right"] = (s + 1, 1.0 if s + 1 == n else 0.0)
        t[s, "quit"] = (n + 1, 0.2)
    return MDP("chain", ["right", "quit"], n + 2, t, terminal=[n, n + 1], optimal="right",
               greedy="quit")


def bandit_trap() -> MDP:
    # 0 start, 1 safe end, 2 trap (absorbing, -1 per step), 3 zero end
    t = {(0, "safe"): (1, 0.5), (0, "trap"): (2, 1.0), (0, "zero"): (3, 0.0)}
    for a in ("safe", "trap", "zero"):
        t[2, a] = (2, -1.0)
    return MDP("bandit_trap", ["safe", "trap", "zero"], 4, t, terminal=[1, 3], optimal="safe",
               greedy="trap")


def two_step() -> MDP:
    # 0 start, 1 after early, 2 after late, 3 end
    t = {(0, "early"): (1, 1.0), (0, "late"): (2, 0.0), (0, "half"): (3, 0.5)}
    for a in ("early", "late", "half"):
        t[1, a] = (3, 0.0)
    t[2, "early"] = (3, 0.0)
    t[2, "late"] = (3, 3.0)
    t[2, "half"] = (3, 0.0)
    return MDP("two_step", ["early", "late", "half"], 4, t, terminal=[3], optimal="late",
               greedy="early")


ALL = (chain, bandit_trap, two_step)


class ExactModel:
    """The true model of the MDPs `mdps`, laid side by side; see the module docstring.

    `root_obs(rows)` gives the observation batch of rows that start in mdps[rows[i]].
    `calls` counts recurrent_inference calls; `visited` records every (global state, action) the
    search asked about (including the placeholder rows the driver sends for trees that need no
    expansion, which a test must not count as expansions).
    """

    def __init__(self, mdps: Sequence[MDP], dtype=torch.float32):
        self.mdps = list(mdps)
        self.offsets = np.cumsum([0] + [m.num_states for m in self.mdps])
        S, A = int(self.offsets[-1]), NUM_ACTIONS
        next_state = np.zeros((S, A), np.int64)
        reward = np.full((S, A), BAIT)
        legal = np.zeros((S, A), np.bool_)
        terminal = np.zeros(S, np.bool_)
        value = np.zeros(S)
        logits = np.zeros((S, A))
        for m, off in zip(self.mdps, self.offsets):
            for s in range(m.num_states):
                next_state[off + s] = off + s  # illegal actions: stay, with the bait reward
            for (s, name), (s2, r) in m.transitions.items():
                a = m.label(name)
                next_state[off + s, a] = off + s2
                reward[off + s, a] = r
                legal[off + s, a] = True
            terminal[off + np.asarray(m.terminal, np.int64)] = True
            if m.value is not None:
                value[off:off + m.num_states] = m.value
            if m.logits is not None:
                logits[off:off + m.num_states] = m.logits
        self.num_states = S
        self.next_state = torch.as_tensor(next_state)
        self.reward = torch.as_tensor(reward, dtype=dtype)
        self.legal = torch.as_tensor(legal)
        self.terminal = torch.as_tensor(terminal)
        self.value = torch.as_tensor(value, dtype=dtype)
        self.logits = torch.as_tensor(logits, dtype=dtype)
        self.dtype = dtype
        self.calls = 0
        self.visited: List[np.ndarray] = []

    def root_obs(self, rows: Sequence[int]) -> torch.Tensor:
        return torch.as_tensor(self.offsets[np.asarray(rows)], dtype=torch.long)

    def state(self, latent: torch.Tensor) -> torch.Tensor:
        return latent.argmax(dim=1)

    def _output(self, state: torch.Tensor, reward: torch.Tensor) -> ModelOutput:
        latent = torch.nn.functional.one_hot(state, self.num_states).to(self.dtype)
        return ModelOutput(latent=latent, reward=reward, value=self.value[state],
                           policy_logits=self.logits[state], terminal=self.terminal[state],
                           action_mask=self.legal[state])

    def initial_inference(self, obs) -> ModelOutput:
        state = torch.as_tensor(obs, dtype=torch.long).reshape(-1)
        return self._output(state, torch.zeros(len(state), dtype=self.dtype))

    def recurrent_inference(self, latent: torch.Tensor, action) -> ModelOutput:
        self.calls += 1
        state = self.state(latent)
        action = torch.as_tensor(action, dtype=torch.long).reshape(-1)
        self.visited.append(torch.stack([state, action], 1).numpy().copy())
        # Out of a terminal state every action is bait (see the module docstring).
        reward = torch.where(self.terminal[state], torch.tensor(BAIT, dtype=self.dtype),
                             self.reward[state, action])
        return self._output(self.next_state[state, action], reward)

    def local_state(self, row_mdp: int, global_state: int) -> int:
        return int(global_state - self.offsets[row_mdp])


def batch_of(mdp_makers, batch_size: int, seed: int = 0):
    """`batch_size` rows cycling through the MDP makers, each with its own action labels.
    Returns (model, obs, mdps of each row)."""
    rng = np.random.default_rng(seed)
    mdps = [mdp_makers[i % len(mdp_makers)]().shuffled(rng) for i in range(batch_size)]
    model = ExactModel(mdps)
    return model, model.root_obs(range(batch_size)), mdps
