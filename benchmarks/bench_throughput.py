#!/usr/bin/env python
"""Training throughput of the default CartPole-v1 run with the compiled search loop and without it,
measured in one invocation (issue 13's throughput target).

    python benchmarks/bench_throughput.py [--steps 4000] [--seeds 0] [--repeats 2] [--out FILE]

For each seed, `--repeats` times in turn, one child process per run trains `python train.py`'s
agent (the CartPole-v1 preset, no evaluations) for --steps environment steps with
`search.inference=auto` (the default: planners/fused.py) and then with `search.inference=torch`
(a torch call per simulation), and records environment steps per second and training steps per
second of the whole `learn` call (Numba's compile cache is warmed first). Same seed, same
settings: only how the search calls the network differs. The last line is JSON with the medians
and `speedup` = auto / torch. Figures only; nothing is asserted.
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

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)

MODES = ("auto", "torch")


def one_run(steps: int, seed: int, inference: str) -> dict:
    import torch

    from agent.config import resolve_config
    from agent.ez import EZAgent

    torch.set_num_threads(1)
    agent = EZAgent("CartPole-v1", resolve_config("CartPole-v1", sets=[f"search.inference={inference}"]),
                    seed=seed, device="cpu")
    start = time.perf_counter()
    agent.learn(steps)
    seconds = time.perf_counter() - start
    return {"inference": inference, "seed": seed, "env_steps": agent.num_timesteps, "seconds": round(seconds, 2),
            "env_steps_per_s": round(agent.num_timesteps / seconds, 1),
            "train_steps_per_s": round(agent.learner.train_steps / seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--seeds", default="0")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", metavar="FILE")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # steps seed inference
    args = p.parse_args()
    if args.child:
        steps, seed, inference = args.child
        print(json.dumps(one_run(int(steps), int(seed), inference)))
        return

    def child(steps, seed, inference):
        out = subprocess.run([sys.executable, __file__, "--child", str(steps), str(seed), inference], check=True,
                             stdout=subprocess.PIPE, text=True, env=os.environ).stdout
        return json.loads(out.strip().splitlines()[-1])

    child(600, 0, "auto")  # fills Numba's compile cache, so no timed run pays for compiling
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for _ in range(args.repeats):
            for inference in MODES:
                row = child(args.steps, seed, inference)
                runs.append(row)
                print(f"seed {seed} inference={inference}: {row['env_steps_per_s']} env steps/s, "
                      f"{row['train_steps_per_s']} training steps/s", flush=True)
    median = {m: statistics.median(r["env_steps_per_s"] for r in runs if r["inference"] == m) for m in MODES}
    emit({"benchmark": "throughput", "env": "CartPole-v1", "steps": args.steps, "runs": runs,
          "env_steps_per_s": median, "speedup": round(median["auto"] / median["torch"], 2),
          "load_average": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count()}, args.out)


if __name__ == "__main__":
    main()
