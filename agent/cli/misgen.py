"""`train.py misgen`: train on a testbed's train split, report goal misgeneralization on its test split.

    python train.py misgen --env glasszero/CornerGoal-v0 --algos ez,ppo --seeds 0,1,2 --steps 20000 --out results/misgen

Per algo: true-goal success rate, proxy-pursuit rate and return on split="test" (and success on
split="train" for reference), mean ± std over seeds, as a markdown table printed and written to
OUT/misgen.md; per-seed numbers in OUT/misgen.csv, runs in OUT/runs/. For ez, a testbed with a
swapped objective (agent/studies/misgen.py SWAPS) gets a row of its own per swap: the same networks under that objective.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from agent.algorithms import algorithm, parse_algorithms
from agent.config import parse_set
from agent.studies.misgen import SWAPS, aggregate, parse_steps, render_table, results_json, run_misgen
from common.checks import at_least, parse_seeds
from nets import resolve_device


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default="glasszero/CornerGoal-v0", help="a testbed with train/test splits")
    p.add_argument("--algos", default="ez,ppo", help="comma-separated: ez, ppo, dqn, a2c (default ez,ppo)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--steps", default="20000",
                   help="environment steps of training per run: N, or per algo with a default, e.g. "
                        "8000,ppo=30000 (default 20000)")
    p.add_argument("--out", default="results/misgen", help="output directory (default results/misgen)")
    p.add_argument("--episodes", type=int, default=100,
                   help="deterministic episodes per split and seed for the report (default 100)")
    p.add_argument("--eval-interval", type=int, default=None,
                   help="env steps between the training-time evaluations (default steps/5)")
    p.add_argument("--no-swap", action="store_true", help="leave out the swapped-objective row for ez")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="ez config override (dotted, as in `train.py --set`); repeatable")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--resume", action="store_true",
                   help="reuse runs in OUT/runs that finished with the same budget (measured again)")
    p.add_argument("--no-progress", action="store_true", help="no per-run progress bars")


def run(args: argparse.Namespace) -> int:
    algos = parse_algorithms(args.algos)
    seeds = parse_seeds(args.seeds, "--seeds")
    steps = parse_steps(args.steps, algos)
    at_least("--episodes", args.episodes, 1)
    if args.eval_interval is not None:
        at_least("--eval-interval", args.eval_interval, 1)
    resolve_device(args.device)
    overrides = parse_set(args.sets)
    swaps = SWAPS.get(args.env, ()) if not args.no_swap else ()
    trained_with = {k: v for swap in swaps for k, v in swap.train_overrides.items()}
    for cls in {algorithm(a) for a in algos if algorithm(a).can_swap_objective}:  # refuse bad keys now
        cls.check_config(args.env, {**trained_with, **overrides})
    out = Path(args.out)
    results = run_misgen(args.env, algos, seeds, steps, out, episodes=args.episodes,
                         eval_interval=args.eval_interval, swap=not args.no_swap, ez_overrides=overrides,
                         device=args.device, progress_bar=not args.no_progress, resume=args.resume,
                         write=tqdm.write)
    rows = aggregate(results)
    table = render_table(rows, args.env, steps, args.episodes)
    (out / "misgen.md").write_text(table)
    print(table)
    print(f"wrote {out / 'misgen.md'}, {out / 'misgen.csv'}")
    print(results_json(rows))
    return 0
