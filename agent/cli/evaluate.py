"""`python train.py eval --checkpoint PATH`: evaluate any run's checkpoint on the shared protocol.

The episodes, seeds and environment are those every training run is evaluated with
(agent/evaluation.py). For an agent that plans, the objective flags (--objective, --value, ...)
swap what the search maximizes before evaluating, with no retraining.
"""
from __future__ import annotations

import argparse
import json

from agent.algorithms import load_agent
from agent.cli.objective_flags import add_objective_arguments, apply_objective_args, check_shared_flags
from agent.evaluation import evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="model.pt, model.zip or a run directory")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, help="evaluation seed (default: the run's training seed)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_objective_arguments(parser)


def run(args: argparse.Namespace) -> int:
    check_shared_flags(args)
    agent = load_agent(args.checkpoint, device=args.device)
    plans = type(agent).can_swap_objective
    apply_objective_args(agent, args)
    seed = agent.seed if args.seed is None else args.seed
    result = evaluate(lambda obs: agent.predict(obs, deterministic=True)[0], agent.env_id, seed,
                      args.episodes, wrappers=agent.wrappers, check=plans)
    report = {"checkpoint": str(args.checkpoint), "env_id": agent.env_id, "seed": seed,
              "episodes": args.episodes, "mean_return": result.mean_return, "std_return": result.std_return,
              "returns": result.returns.tolist(), "lengths": result.lengths.tolist()}
    if plans:
        report["objective"] = agent.objective.describe()
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{agent.env_id} | {args.episodes} episodes | return {result.mean_return:.2f} "
              f"± {result.std_return:.2f}" + (f" | objective: {report['objective']}" if plans else ""))
    return 0
