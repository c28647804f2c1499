"""Exact in-sample value iteration over a replay whose states repeat.

In a deterministic task with few distinct observations (a grid world), the same state is stored
many times, left by different actions in different episodes. Merging identical observations turns
the replay into a graph, and value iteration over its edges gives every stored state the best
return the *replayed* transitions reach under a new reward: the in-sample optimum implicit
Q-learning's expectile tends to as it goes to 1, computed exactly instead of fitted by a network
bootstrapping on itself. Refit (agent/refit.py) regresses its value head on these values and its
prior on the actions that achieve them where the replay's states repeat; it keeps the fitted
expectile where they do not (CartPole's continuous states: every state has the one action that
was taken there, and the graph's value would only be the old policy's return).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

# Graph values are used when the stored states have at most this many distinct observations per
# stored state: below it, states are revisited and left by several actions.
REPEAT_FRACTION = 0.5
TOLERANCE = 1e-9  # value iteration stops when no value moves more
TIE = 1e-6  # an action whose value is within this of the best is a best one


@dataclass
class ReplayGraph:
    """Per stored state row: the class of its observation, its value (0 where the episode ended on
    arriving there: absorbing, as the search treats it) and the actions of the replayed
    transitions out of its class that achieve the class's value."""

    state_class: np.ndarray  # [U] int
    value: np.ndarray  # [U] float64
    best_actions: np.ndarray  # [U, A] bool (no action where the class was never left)
    classes: int
    iterations: int


def observation_classes(obs: np.ndarray) -> np.ndarray:
    """[U] int: the same number for identical observations (bytewise), numbered 0..M-1."""
    flat = np.ascontiguousarray(obs.reshape(len(obs), -1))
    rows = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).ravel()
    return np.unique(rows, return_inverse=True)[1].reshape(-1)


def states_repeat(state_class: np.ndarray) -> bool:
    return len(state_class) > 0 and (state_class.max() + 1) <= REPEAT_FRACTION * len(state_class)


def value_iteration(src: np.ndarray, action: np.ndarray, dst: np.ndarray, reward: np.ndarray, live: np.ndarray,
                    classes: int, num_actions: int, discount: float, max_iterations: int = 100_000) -> tuple:
    """Q[c, a] = the mean over the edges t out of class c by action a of reward[t] + discount *
    live[t] * V[dst[t]], and V[c] = the max over the actions replayed from c. The mean, not the
    max over edges: where one observation stands for several states (a partial view) or an
    action's outcome is random, the best the agent can count on is the replayed outcomes'
    average, not the luckiest of them; in a deterministic task both are the same.

    A class never left (the newest data, an episode cut by a time limit there) is worth the least
    any left class is worth: nothing in replay says what follows it, and an unknown state valued
    above known ones would be sought out. Returns (V [classes], Q [classes, num_actions], NaN
    where an action was never replayed from a class, iterations)."""
    if not 0.0 <= discount < 1.0:
        raise ValueError(f"value iteration needs a discount in [0, 1), got {discount}")
    if len(src) == 0:
        raise ValueError("value iteration needs at least one transition")
    pair = src * num_actions + action
    counts = np.bincount(pair, minlength=classes * num_actions)
    replayed = (counts > 0).reshape(classes, num_actions)
    left = replayed.any(axis=1)
    reward, live = reward.astype(np.float64), live.astype(np.float64)
    value = np.zeros(classes)
    for iteration in range(1, max_iterations + 1):
        q = _action_values(pair, reward + discount * live * value[dst], counts, replayed)
        new = np.where(replayed, q, -np.inf).max(axis=1)
        new[~left] = new[left].min()
        moved = np.abs(new - value).max()
        value = new
        if moved <= TOLERANCE:
            break
    else:
        warnings.warn(f"replay graph value iteration stopped after {max_iterations} sweeps, still moving by "
                      f"{moved:.2g}", RuntimeWarning, stacklevel=2)
    return value, _action_values(pair, reward + discount * live * value[dst], counts, replayed), iteration


def _action_values(pair: np.ndarray, edge_q: np.ndarray, counts: np.ndarray, replayed: np.ndarray) -> np.ndarray:
    """[classes, A]: the mean of edge_q per (class, action) pair; NaN where none was replayed."""
    mean = np.bincount(pair, weights=edge_q, minlength=counts.size) / np.maximum(counts, 1)
    return np.where(replayed, mean.reshape(replayed.shape), np.nan)


def replay_graph(state_class: np.ndarray, prev: np.ndarray, nxt: np.ndarray, action: np.ndarray,
                 reward: np.ndarray, ended: np.ndarray, num_actions: int, discount: float) -> ReplayGraph:
    """The graph of U stored states, merged by `state_class` [U] (observation_classes), and the
    transitions prev[t] -> nxt[t] (state rows) by action[t] with reward[t]; ended[u]: the episode
    ended on arriving at row u."""
    classes = int(state_class.max()) + 1
    src, dst = state_class[prev], state_class[nxt]
    class_value, q, iterations = value_iteration(src, action, dst, reward, ~ended[nxt], classes, num_actions,
                                                 discount)
    # A tie is looser than convergence: values on reward cycles stop within ~TOLERANCE / (1 - discount).
    best = np.nan_to_num(q, nan=-np.inf) >= class_value[:, None] - TIE
    value = np.where(ended, 0.0, class_value[state_class])
    return ReplayGraph(state_class, value, best[state_class], classes, iterations)
