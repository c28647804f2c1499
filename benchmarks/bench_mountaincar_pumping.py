#!/usr/bin/env python
"""Do MountainCar explorers choose the action that pumps energy? (issue 13, the presets target)

    python benchmarks/bench_mountaincar_pumping.py --runs DIR [DIR ...] [--states 200] [--out FILE]

MountainCar's flag is reached by pushing the way the car already moves, swing after swing; a
policy that does so at no better than chance never gets there. For each run directory train.py
wrote with visit-count explorers (its model.pt, config.yaml and evaluations.csv), this sets the
environment to `--states` random states (position uniform in [-1.0, -0.2], the valley, velocity
uniform in +-0.03 with |velocity| >= 0.002), shows each to the agent through the run's own
wrappers, and searches once without root noise under the explorers' objective (the training
objective plus explore_weight times the learned intrinsic value) and under the training objective
alone. It reports how often the most visited root action, and the root action of highest Q,
pushes the way the car moves (action 2 when moving right, 0 when moving left): 0.5 is chance
between the two pushes (action 1, no push, is counted as neither). The last line is JSON. Figures
only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_presets import load_run  # noqa: E402  (benchmarks/, the script's own folder)
from result_line import emit  # noqa: E402
from run_record import settings_over_preset, train_command  # noqa: E402


def wrapped_observations(env: gym.Env, states: np.ndarray) -> np.ndarray:
    """The observations the agent sees at raw MountainCar states [N, 2]: each observation wrapper
    of `env` applied, innermost first."""
    layers, e = [], env
    while isinstance(e, gym.Wrapper):
        layers.append(e)
        e = e.env
    out = []
    for state in states:
        obs = np.asarray(state, np.float32)
        for layer in reversed(layers):
            if isinstance(layer, gym.ObservationWrapper):
                obs = layer.observation(obs)
        out.append(obs)
    return np.stack(out).astype(np.float32)


def pumping(run_dir: Path, num_states: int, seed: int) -> dict:
    import envs
    from agent.explore import Explorers
    from agent.ez import EZAgent
    from planners.policies import plan

    summary, _ = load_run(run_dir)
    agent = EZAgent.load(run_dir / "model.pt", device="cpu")
    c = agent.config
    if c.explore_family != "visit-count" or agent.aux is None:
        raise SystemExit(f"{run_dir}: not a run with visit-count explorers (explore_family={c.explore_family}); "
                         f"this benchmark reads their learned intrinsic value")
    rng = np.random.default_rng(seed)
    velocity = rng.uniform(0.002, 0.03, num_states) * rng.choice([-1.0, 1.0], num_states)
    states = np.stack([rng.uniform(-1.0, -0.2, num_states), velocity], 1)
    env = envs.make(agent.env_id, seed, wrappers=agent.env_wrappers())
    obs = wrapped_observations(env, states)
    pump = np.where(velocity > 0, 2, 0)
    explorers = Explorers(1, int(np.prod(agent.obs_shape)), c.explore_weight, c.explore_family,
                          heads=agent.aux.heads, discount=c.explore_discount)
    out = {"run": f"{run_dir.parent.name}/{run_dir.name}", "seed": summary.seed,
           "train_command": train_command(summary, settings_over_preset(summary))}
    for who, objective in (("explorers", explorers.objective(agent.objective)), ("players", agent.objective)):
        result = plan(agent.model, objective, obs, c.search, rng=np.random.default_rng(seed), add_noise=False,
                      temperature=1.0)
        q = np.where(np.isnan(result.q_values), -np.inf, result.q_values)
        for rule, chosen in (("visits", result.action_weights.argmax(1)), ("q", q.argmax(1))):
            pushes = chosen != 1
            out[f"{who}_{rule}_pump_share"] = round(float((chosen == pump)[pushes].mean()), 3) if pushes.any() else None
            out[f"{who}_{rule}_no_push_share"] = round(float((~pushes).mean()), 3)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True, metavar="DIR")
    p.add_argument("--states", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE")
    args = p.parse_args()
    rows = [pumping(Path(d), args.states, args.seed) for d in args.runs]
    for row in rows:
        print({k: v for k, v in row.items() if k != "train_command"})
    emit({"benchmark": "mountaincar_pumping", "states": args.states, "chance": 0.5, "runs": rows}, args.out)


if __name__ == "__main__":
    main()
