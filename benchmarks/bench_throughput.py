#!/usr/bin/env python
"""Training throughput of the default CartPole-v1 run against the same run with parts of its
fast path turned off, measured in one invocation (issue 13's throughput target).

    python benchmarks/bench_throughput.py [--steps 6000] [--planned 20000] [--seeds 0] [--repeats 2] [--out FILE]

One child process per run trains `python train.py`'s agent (the CartPole-v1 preset at replay
ratio 0.5, the run the issue measured; no evaluations) with its schedules planned for --planned environment steps (the default run's
20,000, which is what makes learner_backend=auto compile) and stops after --steps. Modes, in turn:

    default        the preset: compiled search loop (planners/fused.py), compiled learner unroll,
                   reanalyzed targets reused within a target network (reuse_reanalysis)
    no-reuse       reuse_reanalysis=false: every sampled state's policy target searched again
    eager-learner  and learner_backend=eager
    torch          and search.inference=torch (the path before any of these existed)

Each row records environment steps per second and training steps per second over the whole
`learn` call, the learner's compilation included (its cache, like Numba's, is warmed first by an
untimed run: a first run on a new machine pays about 30 s more). Same seed, same settings: only
the backends differ, and between default and no-reuse how often a policy target is searched (so
those two runs follow other trajectories). The last line is JSON with the medians and the
speedups over `torch`. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from child_process import run_child  # noqa: E402  (benchmarks/, the script's own folder)
from result_line import emit  # noqa: E402

# The work per environment step of the run issue 13 measured: one training step per two env steps
# (the CartPole preset since trains twice per step, README "Speed": four times the work per env step).
ISSUE_RUN = ["replay_ratio=0.5"]
# Each mode turns one more part of the fast path off, down to the path before any of it existed.
NO_REUSE = ISSUE_RUN + ["reuse_reanalysis=false"]
MODES = {"default": ISSUE_RUN, "no-reuse": NO_REUSE, "eager-learner": NO_REUSE + ["learner_backend=eager"],
         "torch": NO_REUSE + ["search.inference=torch", "learner_backend=eager"]}


def one_run(steps: int, planned: int, seed: int, mode: str) -> dict:
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from agent.config import resolve_config
    from agent.ez import EZAgent

    class StopAfter(BaseCallback):
        def _on_step(self) -> bool:
            return self.num_timesteps < steps

    torch.set_num_threads(1)
    agent = EZAgent("CartPole-v1", resolve_config("CartPole-v1", sets=MODES[mode]), seed=seed, device="cpu")
    start = time.perf_counter()
    agent.learn(planned, callback=StopAfter())
    seconds = time.perf_counter() - start
    return {"mode": mode, "seed": seed, "env_steps": agent.num_timesteps, "seconds": round(seconds, 2),
            "learner_compiled": agent.learner.compiled,
            "env_steps_per_s": round(agent.num_timesteps / seconds, 1),
            "train_steps_per_s": round(agent.learner.train_steps / seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--planned", type=int, default=20_000)
    p.add_argument("--seeds", default="0")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", metavar="FILE")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # steps planned seed mode
    args = p.parse_args()
    if args.child:
        steps, planned, seed, mode = args.child
        print(json.dumps(one_run(int(steps), int(planned), int(seed), mode)))
        return

    def child(steps, seed, mode):
        out = run_child([sys.executable, __file__, "--child", str(steps), str(args.planned), str(seed), mode],
                        stdout=subprocess.PIPE, env=os.environ).stdout
        return json.loads(out.strip().splitlines()[-1])

    child(1200, 0, "default")  # fills Numba's and the learner's compile caches: no timed run compiles cold
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for _ in range(args.repeats):
            for mode in MODES:
                row = child(args.steps, seed, mode)
                runs.append(row)
                print(f"seed {seed} {mode}: {row['env_steps_per_s']} env steps/s, "
                      f"{row['train_steps_per_s']} training steps/s", flush=True)
    median = {m: statistics.median(r["env_steps_per_s"] for r in runs if r["mode"] == m) for m in MODES}
    emit({"benchmark": "throughput", "env": "CartPole-v1", "steps": args.steps, "planned": args.planned,
          "runs": runs, "env_steps_per_s": median,
          "speedup": {m: round(median[m] / median["torch"], 2) for m in MODES if m != "torch"},
          "load_average": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count()}, args.out)


if __name__ == "__main__":
    main()
