"""In-sample value iteration over the replay graph (agent/replay_graph.py), against values worked
out by hand and a brute-force search over paths."""
import functools

import numpy as np
import pytest

from agent.replay_graph import observation_classes, replay_graph, states_repeat, value_iteration


def _brute_force(src, action, dst, reward, live, classes, discount, depth=12):
    """The Bellman recursion to `depth` edges, memoized: per (class, action) the mean over its
    edges of reward + discount * value(next), the max over actions; a class never left takes the
    least value of a left class, like the graph."""
    @functools.lru_cache(maxsize=None)
    def best(c, d):
        if d == 0:
            return 0.0
        out = [t for t in range(len(src)) if src[t] == c]
        if not out:
            return None
        by_action = {}
        for t in out:
            by_action.setdefault(action[t], []).append(
                reward[t] + (discount * best_or_floor(dst[t], d - 1) if live[t] else 0.0))
        return max(np.mean(v) for v in by_action.values())

    def best_or_floor(c, d):
        v = best(c, d)
        return floor(d) if v is None else v

    @functools.lru_cache(maxsize=None)
    def floor(d):
        return min(best(c, d) for c in set(src))
    return np.array([best_or_floor(c, depth) for c in range(classes)])


def test_value_iteration_on_a_known_graph():
    # 0 -a0-> 1 -a0-> 2 (goal: reward 1, episode ends); 0 -a1-> 0 (a no-op); 1 -a1-> 3 (never left)
    src, action, dst = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]), np.array([1, 2, 0, 3])
    reward, live = np.array([0.0, 1.0, 0.0, 0.0]), np.array([True, False, True, True])
    value, q, _ = value_iteration(src, action, dst, reward, live, 4, 2, discount=0.9)
    # 2 was never left either: the least value of a left class (0.9 at class 0)
    np.testing.assert_allclose(value, [0.9, 1.0, 0.9, 0.9])
    np.testing.assert_allclose(q, [[0.9, 0.81], [1.0, 0.81], [np.nan, np.nan], [np.nan, np.nan]])


def test_an_action_with_several_replayed_outcomes_is_worth_their_mean():
    # from class 0, action 0 once reached the goal (reward 1) and once did not (an aliased or random
    # outcome); action 1 surely pays 0.6
    src, action, dst = np.array([0, 0, 0]), np.array([0, 0, 1]), np.array([1, 1, 1])
    reward, live = np.array([1.0, 0.0, 0.6]), np.array([False, False, False])
    value, q, _ = value_iteration(src, action, dst, reward, live, 2, 2, discount=0.9)
    np.testing.assert_allclose(q[0], [0.5, 0.6])
    assert value[0] == pytest.approx(0.6)


def test_value_iteration_matches_a_brute_force_search_on_random_graphs():
    rng = np.random.default_rng(0)
    for _ in range(5):
        classes, edges = 5, 12
        src, action, dst = rng.integers(0, classes, edges), rng.integers(0, 2, edges), rng.integers(0, classes, edges)
        reward = rng.choice([-0.1, 0.0, 1.0], edges)
        live = rng.random(edges) > 0.2
        value, _, _ = value_iteration(src, action, dst, reward, live, classes, 2, discount=0.5)
        np.testing.assert_allclose(value, _brute_force(src, action, dst, reward, live, classes, 0.5, depth=30),
                                   atol=1e-6)


def test_replay_graph_merges_identical_observations_and_names_the_best_actions():
    # the corridor 0..3; episodes: 1 -> 0 (left, reward 0), 1 -> 2 -> 3 (right, right; reward 1, ends at 3)
    obs = np.array([[1.0], [0.0], [1.0], [2.0], [3.0]], dtype=np.float32)  # rows 0 and 2: the same cell
    prev, nxt = np.array([0, 2, 3]), np.array([1, 3, 4])
    action, reward = np.array([0, 1, 1]), np.array([0.0, 0.0, 1.0])
    ended = np.array([False, False, False, False, True])
    g = replay_graph(observation_classes(obs), prev, nxt, action, reward, ended, num_actions=2, discount=0.9)
    assert g.classes == 4 and g.state_class[0] == g.state_class[2]
    np.testing.assert_allclose(g.value, [0.9, 0.9, 0.9, 1.0, 0.0])  # cell 0 never left: the least value
    assert g.best_actions[0].tolist() == [False, True]  # from cell 1 the replayed step right, not left
    assert g.best_actions[4].tolist() == [False, False]  # never left: no best action


def test_observation_classes_and_when_states_repeat():
    grid = np.zeros((6, 3, 3, 2), np.uint8)
    grid[3:, 0, 0, 0] = 1
    assert observation_classes(grid).tolist() == [0, 0, 0, 1, 1, 1]
    assert states_repeat(observation_classes(grid))
    continuous = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    assert not states_repeat(observation_classes(continuous))


def test_value_iteration_refuses_a_discount_of_one():
    with pytest.raises(ValueError, match="discount"):
        value_iteration(np.array([0]), np.array([0]), np.array([0]), np.array([1.0]), np.array([True]), 1, 1,
                        discount=1.0)
