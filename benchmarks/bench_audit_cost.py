#!/usr/bin/env python
"""Wall-clock of the search-amplification audit with and without its simulation sweep and its
uniform-prior search: what the audit after every training run (5 episodes) costs.

    python benchmarks/bench_audit_cost.py [--checkpoint tests/fixtures/cartpole_ez.pt]
        [--episodes 5] [--simulations 8,25] [--repeats 3] [--out FILE]

Each setting runs `agent.studies.audit.run_audit` on the same episodes, `--repeats` times after one
warm-up (Numba compilation, first model calls), and reports the median seconds and the returns.
`--simulations` sets the full search's own count (c): the checkpoint's, and the CartPole preset's 25.
The settings: the three policies only (no sweep, no uniform prior: the audit before the sweep), the
short sweep QUICK_SWEEP with the uniform prior (the training-time audit), and the default sweep
DEFAULT_SWEEP with the uniform prior (`train.py audit`). The last line is JSON. Figures only.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(ROOT / "tests" / "fixtures" / "cartpole_ez.pt"))
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--simulations", default="", help="the full search's counts to time (default: the checkpoint's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args()

    import torch
    torch.set_num_threads(1)
    from agent.algorithms import load_agent
    from agent.studies.audit import DEFAULT_SWEEP, QUICK_SWEEP, run_audit

    agent = load_agent(args.checkpoint, device="cpu")
    own = agent.config.search
    counts = [int(n) for n in args.simulations.split(",") if n.strip()] or [own.num_simulations]
    settings = {"three policies only": dict(simulations=(), uniform_prior=False),
                "quick sweep + uniform prior (training audit)": dict(simulations=QUICK_SWEEP, uniform_prior=True),
                "default sweep + uniform prior (train.py audit)": dict(simulations=DEFAULT_SWEEP, uniform_prior=True)}
    run_audit(agent, episodes=args.episodes, simulations=(), uniform_prior=False)  # warm-up
    rows = []
    for n in counts:
        agent.config.search = dataclasses.replace(own, num_simulations=n)
        for name, kwargs in settings.items():
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                report = run_audit(agent, episodes=args.episodes, **kwargs)
                seconds.append(time.perf_counter() - start)
            rows.append({"num_simulations": n, "setting": name, "sweep": list(kwargs["simulations"]),
                         "uniform_prior": kwargs["uniform_prior"], "median_s": round(statistics.median(seconds), 3),
                         "seconds": [round(s, 3) for s in seconds],
                         "return_search": report["returns"]["search"]["mean"]})
            print(f"(c) {n:>3} simulations | {name:<48} {statistics.median(seconds):7.2f} s", flush=True)
    checkpoint = Path(args.checkpoint).resolve()
    emit({"benchmark": "audit_cost",
          "checkpoint": str(checkpoint.relative_to(ROOT)) if checkpoint.is_relative_to(ROOT) else args.checkpoint,
          "env_id": agent.env_id, "episodes": args.episodes, "repeats": args.repeats, "quick_sweep": list(QUICK_SWEEP),
          "default_sweep": list(DEFAULT_SWEEP), "rows": rows,
          "machine": "2-core shared CPU machine, no GPU, torch threads 1"}, args.out)


if __name__ == "__main__":
    main()
