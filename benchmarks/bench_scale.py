#!/usr/bin/env python
"""Throughput of the distributed form (train.py --workers N) against the single-process loop, on
CartPole-v1 with the default preset.

    python benchmarks/bench_scale.py [--configs 0,1,2,2+1] [--steps 3000] [--curve-steps 20000]
                                     [--curves-only] [--out benchmarks/results/scale.json]

1. Throughput per configuration ("N" = N self-play actors, "N+M" = and M reanalyze actors, "0" =
   the single-process loop): environment steps/s and learner updates/s over `--steps` env steps
   after learning_starts (start-up, actor start and the first `learning_starts` steps excluded).
2. Per-unit costs, measured in this process: a self-play vector step, a learner step (whole, and
   without its reanalysis search), a replay insert of one vector step, a weight publication
   (snapshot + ray.put) and its fetch. From them, a paper estimate of env steps/s at 8, 32 and 128
   self-play actors (one core each, reanalyze actors as needed), naming the first bottleneck.
3. With --curve-steps > 0: learning curves (eval mean return vs env steps) of --workers 0 and 2,
   for each of --curve-seeds. --curves-only skips 1 and 2 (timings need an idle machine; curves
   per env step do not).

Figures only; nothing is asserted. The last line is JSON (env_steps_per_s per configuration,
speedup_2_workers, the estimate, the command); --out writes it to a file.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)

ENV = "CartPole-v1"


def _parse_config(text: str):
    workers, _, reanalyze = text.partition("+")
    return int(workers), int(reanalyze or 0)


def _agent(seed: int, sets):
    from agent.config import resolve_config
    from agent.ez import EZAgent
    return EZAgent(ENV, resolve_config(ENV, sets=sets), seed=seed, device="cpu")


def throughput(config: str, steps: int, seed: int, sets) -> dict:
    """Env steps/s and updates/s of one configuration, after learning_starts."""
    from stable_baselines3.common.callbacks import BaseCallback

    from agent.distributed import DistributedOptions, learn_distributed

    workers, reanalyze = _parse_config(config)
    agent = _agent(seed, sets)
    start = agent.config.learning_starts

    class Clock(BaseCallback):
        t0 = steps0 = updates0 = None

        def _on_step(self) -> bool:
            if self.t0 is None and self.num_timesteps >= start:
                self.t0, self.steps0, self.updates0 = time.perf_counter(), self.num_timesteps, agent.learner.train_steps
            return True

    clock = Clock()
    total = start + steps
    if workers:
        learn_distributed(agent, total, [clock], False, DistributedOptions(workers, reanalyze))
    else:
        agent.learn(total, callback=[clock])
    seconds = time.perf_counter() - clock.t0
    return {"config": config, "workers": workers, "reanalyze_workers": reanalyze,
            "env_steps_per_s": round((agent.num_timesteps - clock.steps0) / seconds, 1),
            "updates_per_s": round((agent.learner.train_steps - clock.updates0) / seconds, 2),
            # The share of each batch's reanalysis the learner ended up searching itself (agent/distributed/loop.py).
            "reanalysis_local_share": agent._last_stats.get("train/reanalysis_local_share")}


def unit_costs(seed: int, sets) -> dict:
    """Seconds per unit of work, in this process."""
    import numpy as np
    import ray

    from agent.distributed.actors import policy_snapshot
    from agent.reanalyze import reanalyze_policies
    from agent.replay import Replay
    from agent.selfplay import write_transition

    agent = _agent(seed, sets)
    c = agent.config
    agent.learn(c.learning_starts + 8 * c.num_envs)  # a filled replay and a compiled search
    sp = agent._selfplay

    def timed(fn, n):
        t = time.perf_counter()
        for _ in range(n):
            out = fn()
        return (time.perf_counter() - t) / n, out

    act, (transition, _) = timed(lambda: sp.act(agent.model, agent.objective, c.search, 1.0, agent.rng), 20)
    replay = Replay(c.replay_capacity, agent.obs_shape, agent.num_actions)
    prev = [np.full(c.num_envs, -1, dtype=np.int64)]  # boxed: the timed lambda rebinds it
    insert, _ = timed(lambda: prev.__setitem__(0, write_transition(replay, prev[0], transition, 0)), 200)
    reused_shares = []  # with reuse_reanalysis, the share of each batch's targets not searched

    def train_step():
        agent._train_step(beta=0.5)
        if agent.learner.reanalysis_reused is not None:
            reused_shares.append(agent.learner.reanalysis_reused)

    learner_step, _ = timed(train_step, 10)
    # A batch's whole reanalysis, scaled by the share these steps searched.
    draft = agent.learner.draft(agent.replay, agent.objective, agent.rng, agent.num_timesteps, 0.5)
    searched = 1.0 - float(np.mean(reused_shares)) if reused_shares else 1.0
    whole, _ = timed(lambda: reanalyze_policies(agent.learner.target_model, agent.objective, c.search,
                                                draft.obs[draft.redo], agent.rng,
                                                c.reuse_reanalysis), 5)
    reanalysis = whole * searched
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    publish, ref = timed(lambda: ray.put(policy_snapshot(agent.model, agent)), 20)
    fetch, _ = timed(lambda: ray.get(ref), 20)
    if started:
        ray.shutdown()
    return {"num_envs": c.num_envs, "replay_ratio": c.replay_ratio,
            "selfplay_vector_step_s": act, "replay_insert_vector_step_s": insert, "learner_step_s": learner_step,
            "learner_step_without_reanalysis_s": learner_step - reanalysis, "reanalysis_s": reanalysis,
            "reanalysis_searched_share": searched,
            "weight_publish_s": publish, "weight_fetch_s": fetch}


def estimate(costs: dict, actors: int, weight_sync_interval: int = 10) -> dict:
    """Env steps/s at `actors` self-play actors (one core each) on paper: the least of what the actors
    collect, what the learner trains on at replay_ratio (reanalysis offloaded to enough reanalyze
    actors, so a learner step costs its gradient step), what the replay inserts, and what weight
    publication allows (one publication per weight_sync_interval updates, fetched by each actor)."""
    b, ratio = costs["num_envs"], costs["replay_ratio"]
    limits = {
        "self-play actors": actors * b / costs["selfplay_vector_step_s"],
        "learner": 1.0 / (costs["learner_step_without_reanalysis_s"] * ratio),
        "replay insert": b / costs["replay_insert_vector_step_s"],
        # Each publication is put once and fetched by every actor (an object-store read each,
        # counted against the driver's node as an upper bound).
        "weight broadcast": weight_sync_interval / ratio / (costs["weight_publish_s"] + actors * costs["weight_fetch_s"]),
    }
    bottleneck = min(limits, key=limits.get)
    reanalyze_actors = (costs["reanalysis_s"] * ratio * limits[bottleneck])  # cores of reanalysis searching
    return {"actors": actors, "env_steps_per_s": round(limits[bottleneck], 1), "bottleneck": bottleneck,
            "limits": {k: round(v, 1) for k, v in limits.items()},
            "reanalyze_actors_needed": round(reanalyze_actors, 1)}


def curves(steps: int, workers: int, seed: int, eval_interval: int, sets) -> list:
    from agent.callbacks import EvalCallback
    from agent.distributed import DistributedOptions, learn_distributed

    agent = _agent(seed, sets)
    evaluation = EvalCallback(ENV, seed, eval_interval, 20, write=lambda line: print(f"  w{workers} | {line}",
                                                                                      file=sys.stderr))
    if workers:
        learn_distributed(agent, steps, [evaluation], False, DistributedOptions(workers))
    else:
        agent.learn(steps, callback=[evaluation])
    return [[r.env_steps, round(r.mean_return, 1)] for r in evaluation.history]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="0,1,2,2+1", help="N or N+M (self-play + reanalyze actors), comma-separated")
    p.add_argument("--steps", type=int, default=3000, help="env steps measured per configuration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curve-steps", type=int, default=0, help="learning curves of --workers 0 and 2 (0: none)")
    p.add_argument("--curve-seeds", default="0")
    p.add_argument("--eval-interval", type=int, default=1000)
    p.add_argument("--curves-only", action="store_true", help="only the learning curves (needs --curve-steps)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override; repeatable")
    p.add_argument("--out", help="also write the JSON line here (benchmarks/results/scale.json)")
    args = p.parse_args()
    if args.curves_only and args.curve_steps <= 0:
        p.error("--curves-only needs --curve-steps > 0")

    import torch
    torch.set_num_threads(1)

    if args.curves_only:
        emit({"env": ENV, "curves": _all_curves(args)}, args.out)
        return

    rows = []
    for config in args.configs.split(","):
        row = throughput(config.strip(), args.steps, args.seed, args.set)
        print(f"  {row}", file=sys.stderr, flush=True)
        rows.append(row)
    costs = unit_costs(args.seed, args.set)
    print(f"  costs {costs}", file=sys.stderr, flush=True)
    paper = [estimate(costs, n) for n in (8, 32, 128)]
    rate = {r["config"]: r["env_steps_per_s"] for r in rows}
    best_two = max((r["env_steps_per_s"] for r in rows if r["workers"] == 2), default=None)
    result = {"env": ENV, "steps_measured": args.steps, "throughput": rows, "env_steps_per_s": rate,
              "speedup_2_workers": round(best_two / rate["0"], 2) if best_two and "0" in rate else None,
              "unit_costs_s": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in costs.items()},
              "estimate": paper, "first_bottleneck": paper[-1]["bottleneck"]}
    if args.curve_steps:
        result["curves"] = _all_curves(args)
    emit(result, args.out)


def _all_curves(args) -> dict:
    return {f"workers={w}": {s: curves(args.curve_steps, w, int(s), args.eval_interval, args.set)
                             for s in args.curve_seeds.split(",")} for w in (0, 2)}


if __name__ == "__main__":
    main()
