#!/usr/bin/env python
"""How high can MountainCar-v0's evaluation go? (issue 13: the zoo's -100.8 against the best possible)

    python benchmarks/bench_mountaincar_optimal.py [--seeds 0,1,2,5] [--episodes 10] [--grid 1e-3,1e-4] [--out FILE]

The evaluation protocol (agent/evaluation.py) starts run seed s's episodes from the env seeds
eval_seed(s) + i, i < --episodes, so every run of a seed meets the same start positions. For each
start this finds, through MountainCar's own dynamics (checked against the env's step below), the
fewest steps to the flag by a breadth-first search over every action sequence, keeping one state
per grid cell (--grid: cell width in position, in velocity) at each depth. Every kept state is
reached by a real action sequence, so each count is achievable (a return at least this high is
possible from that start); a finer grid can only find shorter paths. The last line is JSON: per
seed the steps per episode and the mean return they add up to. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.evaluation import eval_seed  # noqa: E402
from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)

MAX_STEPS = 200  # MountainCar-v0's time limit


def step(p: np.ndarray, v: np.ndarray, action: int):
    """gymnasium's MountainCarEnv.step on arrays of states (float64, as the env computes)."""
    v = np.clip(v + (action - 1) * 0.001 + np.cos(3 * p) * -0.0025, -0.07, 0.07)
    p = np.clip(p + v, -1.2, 0.6)
    v = np.where((p == -1.2) & (v < 0), 0.0, v)
    return p, v


def check_dynamics(steps: int = 300) -> float:
    """The largest difference between `step` and the env's own over a random action sequence."""
    env = gym.make("MountainCar-v0").unwrapped
    env.reset(seed=0)
    p, v = np.float64(env.state[0]), np.float64(env.state[1])
    rng, worst = np.random.default_rng(0), 0.0
    for _ in range(steps):
        a = int(rng.integers(3))
        env.step(a)
        p, v = step(p, v, a)
        worst = max(worst, abs(env.state[0] - p) + abs(env.state[1] - v))
    return float(worst)


def fewest_steps(position: float, cell: tuple) -> int:
    """Fewest steps to the flag from (position, 0) found on a grid of `cell` (module doc)."""
    p, v = np.array([position]), np.array([0.0])
    for t in range(1, MAX_STEPS + 1):
        p, v = (np.concatenate(x) for x in zip(*(step(p, v, a) for a in range(3))))
        if np.any((p >= 0.5) & (v >= 0)):  # the env's goal test
            return t
        key = np.round(p / cell[0]).astype(np.int64) * 10**9 + np.round(v / cell[1]).astype(np.int64)
        _, keep = np.unique(key, return_index=True)
        p, v = p[keep], v[keep]
    return MAX_STEPS


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--seeds", default="0,1,2,5")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--grid", default="1e-3,1e-4", help="cell width in position, in velocity")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    cell = tuple(float(x) for x in args.grid.split(","))
    error = check_dynamics()
    if error > 1e-9:
        raise SystemExit(f"the dynamics here differ from gymnasium's MountainCar-v0 by {error}: update `step`")
    found: dict = {}  # env seed -> steps (the seeds' episodes overlap)
    seeds = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        steps = []
        for i in range(args.episodes):
            env_seed = eval_seed(seed) + i
            if env_seed not in found:
                env = gym.make("MountainCar-v0")
                env.reset(seed=env_seed)
                found[env_seed] = fewest_steps(float(env.unwrapped.state[0]), cell)
            steps.append(found[env_seed])
        seeds[str(seed)] = {"steps": steps, "best_mean_return": -float(np.mean(steps))}
        print(seed, seeds[str(seed)], flush=True)
    emit({"benchmark": "mountaincar_optimal", "grid": list(cell), "episodes": args.episodes,
          "dynamics_error": error, "seeds": seeds, "zoo_target": -100.8}, args.out)


if __name__ == "__main__":
    main()
