"""How well a CornerGoal agent's world model predicts the agent's position one step ahead, as the
swapped objective reads it: for every cell and action, with the goal shown where the train split
shows it, the decoded position after one dynamics step (anchored at the root's decoding error, as
ObservedGoalDistance reads it) against the true next cell, in cells (L1).

    python benchmarks/bench_cornergoal_model.py --run NAME=RUN_DIR [--run ...] [--out FILE]

Prints one line per run; the last line is JSON ({name: {"mean_error_cells", "share_over_half_cell"}}).
Figures only; nothing is asserted. Measures the train split only (the goal where training showed it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.algorithms import load_agent  # noqa: E402
from envs.testbeds.corner_goal import MOVES, CornerGoal  # noqa: E402


def one_step_errors(model, size: int = 7) -> np.ndarray:
    env = CornerGoal(size=size)
    cells = [(r, c) for r in range(size) for c in range(size)]
    goal = next(p for p in cells if env.in_region(p))  # the train split's goal (region 1: one cell)
    scale = 2.0 / (size - 1)

    def obs(cell):
        return (np.array(cell + goal) * scale - 1.0).astype(np.float32)

    errors = []
    for cell in (p for p in cells if not env.in_region(p)):
        o = obs(cell)
        with torch.no_grad():
            z = model.initial_inference(o[None]).latent
            root_error = model.decode(z).numpy()[0, :2] - o[:2]
            for a, (dr, dc) in enumerate(MOVES):
                nxt = (min(size - 1, max(0, cell[0] + dr)), min(size - 1, max(0, cell[1] + dc)))
                pred = model.decode(model.recurrent_inference(z, torch.tensor([a])).latent).numpy()[0, :2]
                errors.append(np.abs(pred - root_error - obs(nxt)[:2]).sum() / scale)
    return np.array(errors)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR")
    p.add_argument("--out", help="also write the JSON line to this file, with the command")
    args = p.parse_args()
    result = {}
    for item in args.run:
        name, _, run = item.partition("=")
        e = one_step_errors(load_agent(run, device="cpu").model)
        result[name] = {"mean_error_cells": round(float(e.mean()), 4),
                        "share_over_half_cell": round(float((e > 0.5).mean()), 4), "run": run}
        print(f"{name:<24} mean one-step error {e.mean():.3f} cells, over half a cell {(e > 0.5).mean():.2f}")
    line = {"benchmark": "cornergoal_model", "runs": result,
            "command": "python benchmarks/bench_cornergoal_model.py " + " ".join(f"--run {r}" for r in args.run)}
    if args.out:
        Path(args.out).write_text(json.dumps(line, indent=1) + "\n")
    print(json.dumps(line))


if __name__ == "__main__":
    main()
