"""Replay storage, prioritized sampling, unroll masks, n-step targets and off-policy correction."""
import numpy as np
import pytest

from agent.replay import Replay
from agent.targets import td_horizon, value_targets


def _episode(replay, rewards, terminated, env_step=0, obs_offset=0.0):
    """Write one single-env episode of len(rewards) transitions; obs[i] = obs_offset + i."""
    prev = np.array([-1])
    for i, r in enumerate(rewards):
        prev = replay.add(prev, np.array([[obs_offset + i]], dtype=np.float32), np.array([i % 2]),
                          np.array([r]), np.array([[0.5, 0.5]]), env_step)
    replay.end_episodes(prev, np.array([[obs_offset + len(rewards)]], dtype=np.float32),
                        np.array([terminated]), env_step)


def _targets(replay, start, K, n, gamma, env_steps=0, interval=0):
    u = replay.unroll(np.array(start), K, np.random.default_rng(0))
    # bootstrap value of a state = 100 + its observation, so each bootstrap is identifiable
    z, mask = value_targets(replay, u, td_steps=n, discount=gamma, env_steps=env_steps,
                            correction_interval=interval, bootstrap=lambda o: 100.0 + o[:, 0])
    return u, z, mask


def test_nstep_stops_at_termination_without_bootstrap():
    r = Replay(64, (1,), 2)
    _episode(r, [1.0, 1.0, 1.0], terminated=True)  # states 0,1,2 acted; 3 is the terminal obs
    u, z, mask = _targets(r, [1], K=3, n=5, gamma=0.9)
    assert z[0, 0] == pytest.approx(1 + 0.9)  # r1 + g r2, then terminal: no bootstrap
    assert z[0, 1] == pytest.approx(1.0)
    assert z[0, 2] == 0.0 and z[0, 3] == 0.0  # the terminal state and the absorbing one after it
    assert mask[0].all()
    assert u.absorbing[0].tolist() == [False, False, True, True]
    assert u.reward_mask[0].all() and u.rewards[0].tolist() == [1.0, 1.0, 0.0]
    assert u.acted[0].tolist() == [True, True, False, False]


def test_nstep_bootstraps_past_truncation():
    r = Replay(64, (1,), 2)
    _episode(r, [1.0, 1.0, 1.0], terminated=False)  # time limit: state 3 is a real state
    u, z, mask = _targets(r, [1], K=3, n=5, gamma=0.9)
    assert z[0, 0] == pytest.approx(1 + 0.9 + 0.81 * (100 + 3))
    assert z[0, 2] == pytest.approx(100 + 3)  # the truncated final state: its own value
    assert mask[0].tolist() == [True, True, True, False]  # nothing is known past a truncation
    assert u.reward_mask[0].tolist() == [True, True, False]


def test_nstep_full_horizon_and_pending_newest_data():
    r = Replay(64, (1,), 2)
    prev = np.array([-1])
    for i in range(8):  # an episode still running: the last state has no successor yet
        prev = r.add(prev, np.array([[float(i)]]), np.array([0]), np.array([1.0]), np.array([[1, 0]]), 0)
    _, z, mask = _targets(r, [0], K=5, n=3, gamma=0.5)
    assert z[0, 0] == pytest.approx(1 + 0.5 + 0.25 + 0.125 * (100 + 3))
    _, z, mask = _targets(r, [6], K=2, n=3, gamma=0.5)
    assert z[0, 0] == pytest.approx(1 + 0.5 * (100 + 7))  # bootstraps at the newest stored state
    assert mask[0].tolist() == [True, True, False]


def test_off_policy_correction_shortens_horizon_with_age():
    assert td_horizon(np.array([0, 999, 1000, 2500, 10**6]), 5, 1000).tolist() == [5, 5, 4, 3, 1]
    assert td_horizon(np.array([10**6]), 5, 0).tolist() == [5]
    r = Replay(64, (1,), 2)
    _episode(r, [1.0] * 10, terminated=False, env_step=0)
    _, z, _ = _targets(r, [0], K=0, n=5, gamma=0.5, env_steps=3000, interval=1000)  # horizon 2
    assert z[0, 0] == pytest.approx(1 + 0.5 + 0.25 * (100 + 2))


def test_interleaved_envs_stay_separate():
    r = Replay(64, (1,), 2)
    prev = np.array([-1, -1])
    for i in range(3):
        prev = r.add(prev, np.array([[i], [10 + i]], dtype=np.float32), np.array([0, 1]),
                     np.array([1.0, 2.0]), np.full((2, 2), 0.5), 0)
    u = r.unroll(np.array([0, 1]), 2, np.random.default_rng(0))
    assert r.obs[u.index[0] % r.capacity, 0].tolist() == [0, 1, 2]
    assert r.obs[u.index[1] % r.capacity, 0].tolist() == [10, 11, 12]
    assert u.rewards.tolist() == [[1, 1], [2, 2]]


def test_priority_sampling_and_importance_weights():
    r = Replay(16, (1,), 2, alpha=1.0)
    _episode(r, [0.0] * 4, terminated=True)  # 4 acted states + 1 final (never sampled)
    r.update_priorities(np.arange(4), np.array([1.0, 1.0, 1.0, 5.0]))
    rng = np.random.default_rng(0)
    idx, w = r.sample(20_000, beta=1.0, rng=rng)
    freq = np.bincount(idx, minlength=5) / len(idx)
    assert freq[4] == 0  # the final entry
    assert freq[3] == pytest.approx(5 / 8, abs=0.02)
    # w_i = (N p_i)^-beta / max: the rare states get weight 1, the frequent one 1/5
    assert w[idx == 3].max() == pytest.approx(0.2) and w[idx == 0].max() == pytest.approx(1.0)
    assert r.max_priority == pytest.approx(5.0)
    _episode(r, [0.0], terminated=True)
    assert r.priority[5] == pytest.approx(5.0)  # new data enters at the maximum priority


def test_ring_buffer_overwrites_oldest_and_keeps_links_valid():
    r = Replay(8, (1,), 2)
    for e in range(5):
        _episode(r, [1.0, 1.0], terminated=True, obs_offset=10 * e)  # 3 entries each
    assert r.total == 15 and r.size == 8
    idx, _ = r.sample(256, beta=0.4, rng=np.random.default_rng(1))
    assert idx.min() >= r.total - r.capacity
    u = r.unroll(idx, 2, np.random.default_rng(0))
    stored = u.index >= 0
    assert (u.index[stored] >= r.total - r.capacity).all()
    state = r.state_dict()
    r2 = Replay(8, (1,), 2)
    r2.load_state_dict(state)
    assert np.array_equal(r2.obs, r.obs) and r2.total == r.total


def test_a_kept_reanalyzed_policy_goes_with_its_state():
    """Kept only for states still stored; a state written into the slot later starts without one."""
    r = Replay(4, (1,), 2)
    _episode(r, [1.0, 1.0, 1.0], terminated=True)  # global indices 0..3 fill the ring
    r.keep_reanalyzed(np.array([1, 2]), np.array([[0.9, 0.1], [0.2, 0.8]], np.float32), version=7, epoch=0)
    assert r.reanalyzed_at.tolist() == [-1, 7, 7, -1]
    np.testing.assert_array_equal(r.reanalyzed[2], np.float32([0.2, 0.8]))
    _episode(r, [1.0], terminated=True)  # indices 4 and 5 overwrite slots 0 and 1
    assert r.reanalyzed_at.tolist() == [-1, -1, 7, -1]
    r.keep_reanalyzed(np.array([1, 5]), np.array([[0.5, 0.5], [1.0, 0.0]], np.float32), version=8, epoch=0)
    assert r.reanalyzed_at.tolist() == [-1, 8, 7, -1]  # index 1 is gone: its policy is not kept
    np.testing.assert_array_equal(r.reanalyzed[1], [1.0, 0.0])
    restored = Replay(4, (1,), 2)
    restored.load_state_dict(r.state_dict())
    assert restored.reanalyzed_at.tolist() == [-1, 8, 7, -1]
    r.forget_reanalyzed()
    assert (r.reanalyzed_at == -1).all()
    r.keep_reanalyzed(np.array([5]), np.array([[1.0, 0.0]], np.float32), version=8, epoch=0)  # sampled before
    assert (r.reanalyzed_at == -1).all()


def _lunarlander_bench(monkeypatch):
    """benchmarks/bench_lunarlander_failure.py as a module."""
    import importlib.util
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))  # its own imports (result_line), as when run as a script
    spec = importlib.util.spec_from_file_location("bench_lunarlander_failure", folder / "bench_lunarlander_failure.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_lunarlander_benchmark_search_overrides_apply_or_name_the_flag(monkeypatch):
    # The diagnosis "prior or model?" plays the same checkpoint under changed search settings.
    from planners.config import SearchConfig

    searched_with = _lunarlander_bench(monkeypatch).searched_with
    own = SearchConfig(num_simulations=50)
    changed = searched_with(own, ["prior=uniform", "algorithm=gumbel"])
    assert (changed.prior, changed.algorithm, changed.num_simulations) == ("uniform", "gumbel", 50)
    with pytest.raises(ValueError, match=r"--search prio=uniform: .*the keys are SearchConfig's: .*prior"):
        searched_with(own, ["prio=uniform"])
    with pytest.raises(ValueError, match=r"--search algorithm=bogus: .*puct"):
        searched_with(own, ["algorithm=bogus"])


def test_lunarlander_benchmark_classifies_self_play_endings_from_replay(monkeypatch):
    # benchmarks/bench_lunarlander_failure.py's replay reading: the diagnosis that self-play never
    # completes a landing rests on it.
    from types import SimpleNamespace

    bench = _lunarlander_bench(monkeypatch)
    r = Replay(64, (8,), 4)

    def episode(rewards, terminated, env_step, legs_down=False, explore=False):
        prev = np.array([-1])
        for reward in rewards:
            prev = r.add(prev, np.zeros((1, 8), np.float32), np.array([0]), np.array([reward]),
                         np.full((1, 4), 0.25), env_step, explore=np.array([explore]))
        last = np.zeros((1, 8), np.float32)
        last[0, 6:] = 1.0 if legs_down else 0.0
        r.end_episodes(prev, last, np.array([terminated]), env_step)

    episode([1.0, 100.5], True, 3_000)  # came to rest
    episode([-2.0, -100.0], True, 4_000)  # crashed
    episode([0.5, 0.5], False, 12_000, legs_down=True)  # sat on the ground to the time limit
    episode([0.5, -0.5], False, 13_000)  # time limit in the air
    episode([1.0, 100.0], True, 14_000, explore=True)  # an explorer's: not self-play's own
    endings = bench.self_play_endings(SimpleNamespace(replay=r))["episodes_ended"]
    assert endings == {"0": {"landed": 1, "crashed_or_off": 1, "other": 0, "time": 0, "time_legs_down": 0},
                       "10000": {"landed": 0, "crashed_or_off": 0, "other": 0, "time": 2, "time_legs_down": 1}}


@pytest.mark.parametrize("stack", [1, 4])  # frame stacks: the newest frame is the one read
def test_lunarlander_benchmark_reads_what_self_play_did_at_rest(monkeypatch, stack):
    # The diagnosis that self-play wakes a lander sitting on the ground rests on this reading: only
    # still states with both legs down count, explorers' states are left out, and the search's own
    # choice (the most visited action) is told apart from the action sampled, and a landing is a
    # transition that ended the episode on the +100, not any large reward.
    from types import SimpleNamespace

    bench = _lunarlander_bench(monkeypatch)
    r = Replay(64, (stack, 8) if stack > 1 else (8,), 4, frame_stack=stack)

    def seen(frame):  # one observation as the env hands it: a stack of the last frames when stack > 1
        return np.repeat(frame[None], stack, 0)[None] if stack > 1 else frame[None]

    rest, moving, airborne = np.zeros(8, np.float32), np.zeros(8, np.float32), np.zeros(8, np.float32)
    rest[6:] = moving[6:] = 1.0
    moving[3] = -0.3  # legs down but still falling
    noop_visits, main_visits = np.array([[0.7, 0.1, 0.1, 0.1]]), np.array([[0.1, 0.1, 0.7, 0.1]])
    prev = np.array([-1])
    for obs, action, reward, visits, explore, env_step in (
            (rest, 2, -0.3, main_visits, False, 1_000),  # fired, as the search chose
            (rest, 0, 0.0, main_visits, False, 1_001),  # quiet, not yet landed; the search chose main
            (moving, 2, -0.3, main_visits, False, 1_002),  # not at rest
            (airborne, 1, -0.03, main_visits, False, 1_003),  # not at rest
            (rest, 2, -0.3, main_visits, True, 1_004),  # an explorer's
            (rest, 0, 100.0, noop_visits, False, 1_005)):  # quiet, and the body fell asleep: landed
        prev = r.add(prev, seen(obs), np.array([action]), np.array([reward]), visits, env_step,
                     explore=np.array([explore]))
    r.end_episodes(prev, seen(rest), np.array([True]), 1_006)  # a final entry: nothing acted there
    for reward, terminated in ((60.0, False), (-100.0, True)):  # a shaping jump, then a crash: no landing
        prev = r.add(np.array([-1]), seen(rest), np.array([0]), np.array([reward]), noop_visits, 12_000)
        r.end_episodes(prev, seen(rest), np.array([terminated]), 12_001)
    at_rest = bench.self_play_at_rest(SimpleNamespace(replay=r))["at_rest"]
    assert at_rest == {"0": {"states": 3, "fired": 0.333, "search_fired": 0.667, "landed_per_quiet_step": 0.5},
                       "10000": {"states": 2, "fired": 0.0, "search_fired": 0.0, "landed_per_quiet_step": 0.0}}


def test_lunarlander_benchmark_plays_a_frame_stacked_run_on_its_newest_frames(monkeypatch):
    # The played episodes' readings (endings, legs down, the model's errors split by ground contact)
    # come from one observation per step; a frame-stacked run's agent is handed its stacks, and
    # what the episodes read does not depend on the stack.
    pytest.importorskip("Box2D")
    bench = _lunarlander_bench(monkeypatch)
    seen = {}

    def quiet(batch):  # never fires: the lander falls to the ground from every start
        seen.setdefault("shape", batch.shape[1:])
        return np.zeros(len(batch), np.int64)

    plain_rows, plain = bench.play(quiet, seed=3, episodes=2)
    assert seen.pop("shape") == (8,)
    stack = "gymnasium.wrappers:FrameStackObservation(stack_size=4)"
    rows, stacked = bench.play(quiet, seed=3, episodes=2, wrappers=[stack])
    assert seen["shape"] == (4, 8)  # the agent is handed its stacks
    assert rows == plain_rows and {r["ending"] for r in rows} == {"crashed"}
    assert any(r["both_legs_first_step"] is not None for r in rows)  # legs were read on the ground
    for t, p in zip(stacked, plain):
        assert t["obs"].shape == (len(t["actions"]) + 1, 4, 8)
        np.testing.assert_array_equal(t["frames"], t["obs"][:, -1])
        np.testing.assert_array_equal(t["frames"], p["obs"])
        np.testing.assert_array_equal(p["frames"], p["obs"])
