"""`python train.py eval --checkpoint PATH`: evaluate any run's checkpoint on the shared protocol.

The episodes, seeds and environment are those every training run is evaluated with
(agent/evaluation.py). For an agent that plans, the objective flags (--objective, --value, ...)
swap what the search maximizes before evaluating, with no retraining. The environment flags
(--env, --env-kwargs, --wrapper; agent/cli/env_flags.py) run the checkpoint on another environment
with the same spaces, e.g. a testbed's test split or a reward wrapper.
"""
from __future__ import annotations

import argparse
import json

from agent.algorithms import load_agent
from agent.cli.env_flags import add_env_arguments, check_env_arguments, resolve_env
from agent.cli.objective_flags import add_objective_arguments, apply_objective_args, check_shared_flags
from agent.evaluation import evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="model.pt, model.zip or a run directory")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, help="evaluation seed (default: the run's training seed)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_env_arguments(parser)
    add_objective_arguments(parser)


def run(args: argparse.Namespace) -> int:
    check_shared_flags(args)
    check_env_arguments(args)
    agent = load_agent(args.checkpoint, device=args.device)
    plans = type(agent).can_swap_objective
    env = resolve_env(agent, args)  # a mismatched environment is refused before any episode
    apply_objective_args(agent, args)
    seed = agent.seed if args.seed is None else args.seed
    result = evaluate(lambda obs: agent.predict(obs, deterministic=True)[0], env.env_id, seed,
                      args.episodes, wrappers=env.wrappers, env_kwargs=env.env_kwargs, check=plans)
    report = {"checkpoint": str(args.checkpoint), **env.report(agent), "seed": seed,
              "episodes": args.episodes, "mean_return": result.mean_return, "std_return": result.std_return,
              "returns": result.returns.tolist(), "lengths": result.lengths.tolist()}
    if plans:
        report["objective"] = agent.objective.describe()
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{env.label(agent)} | {args.episodes} episodes | return {result.mean_return:.2f} "
              f"± {result.std_return:.2f}" + (f" | objective: {report['objective']}" if plans else ""))
    return 0
