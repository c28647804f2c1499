#!/usr/bin/env python
"""Memory of training: resident memory must stop growing once replay is full.

    python benchmarks/bench_memory.py soak [--capacity 2000] [--multiple 3] [--out FILE]
    python benchmarks/bench_memory.py default-run [--steps 20000] [--out FILE]

soak: ez on CartPole-v1 with a small replay (`--capacity` entries) trained for `--multiple` times
the steps that fill it; RSS is sampled every `--every` environment steps. Reported: RSS when replay
first fills, at the end, and the growth in between (MB, and MB per 1,000 steps), with the series.
default-run: `python train.py` (CartPole-v1, the README's command) in a child process with
--steps; reported: the child's peak RSS. The last line is JSON. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from child_process import run_child  # noqa: E402  (benchmarks/, the script's own folder)
from result_line import emit  # noqa: E402


def rss_mb() -> float:
    """This process's resident set size now (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def soak(args) -> dict:
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from agent.config import resolve_config
    from agent.ez import EZAgent

    torch.set_num_threads(1)
    sets = [f"replay_capacity={args.capacity}", f"search.num_simulations={args.simulations}"]
    agent = EZAgent("CartPole-v1", resolve_config("CartPole-v1", sets=sets), seed=0, device="cpu")
    series = []

    class Sample(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % args.every < agent.config.num_envs:
                series.append({"env_steps": self.num_timesteps, "rss_mb": round(rss_mb(), 1),
                               "replay_entries": agent.replay.size})
                print(f"  steps {self.num_timesteps:6d}  rss {series[-1]['rss_mb']:7.1f} MB  "
                      f"replay {agent.replay.size}/{args.capacity}", file=sys.stderr, flush=True)
            return True

    steps = args.capacity * args.multiple  # replay holds one entry per step plus one per episode end
    start = time.time()
    agent.learn(steps, callback=Sample())
    full = next(s for s in series if s["replay_entries"] >= args.capacity)
    end = series[-1]
    span = max(1, end["env_steps"] - full["env_steps"])
    return {"benchmark": "memory-soak", "env": "CartPole-v1", "replay_capacity": args.capacity,
            "env_steps": steps, "seconds": round(time.time() - start, 1),
            "rss_mb_when_replay_full": full["rss_mb"], "steps_when_replay_full": full["env_steps"],
            "rss_mb_end": end["rss_mb"], "growth_after_full_mb": round(end["rss_mb"] - full["rss_mb"], 1),
            "growth_mb_per_1000_steps": round((end["rss_mb"] - full["rss_mb"]) * 1000 / span, 2),
            "series": series}


def default_run(args) -> dict:
    with tempfile.TemporaryDirectory() as logdir:
        cmd = [sys.executable, str(ROOT / "train.py"), "--steps", str(args.steps), "--logdir", logdir,
               "--no-progress"]
        start = time.time()
        run_child(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"benchmark": "memory-default-run", "env": "CartPole-v1", "env_steps": args.steps,
            "seconds": round(time.time() - start, 1), "peak_rss_mb": round(peak, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("soak")
    s.add_argument("--capacity", type=int, default=2000)
    s.add_argument("--multiple", type=int, default=3)
    s.add_argument("--every", type=int, default=200)
    s.add_argument("--simulations", type=int, default=8, help="fewer than the preset's 25: memory does not depend on it")
    d = sub.add_parser("default-run")
    d.add_argument("--steps", type=int, default=20_000)
    for q in (s, d):
        q.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    args = p.parse_args()
    emit(soak(args) if args.what == "soak" else default_run(args), args.out)


if __name__ == "__main__":
    main()
