"""`python train.py audit --checkpoint PATH --episodes 20`: how much competence comes from the search.

Evaluates the policy prior alone, one-step greedy lookahead on the learned value, the full search,
the full search with a uniform prior, and the search at each of the --sweep simulation counts, all
on the same episodes; prints the search amplification (definition in agent/studies/audit.py; a
ceiling when the prior alone reaches the reward threshold) and the capacity report. `--write`
puts audit.json in the checkpoint's run directory (where `train.py compare` reads it); `--out
FILE.json` writes it elsewhere. The environment flags (--env,
--env-kwargs, --wrapper; agent/cli/env_flags.py) audit the checkpoint on another environment with
the same spaces.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import List

from agent.studies.audit import DEFAULT_SWEEP, check_simulations, format_audit, run_audit, write_audit
from agent.cli.env_flags import add_env_arguments, asks_for_env_change, check_env_arguments, resolve_env
from agent.cli.objective_flags import (add_objective_arguments, apply_objective_args, check_shared_flags,
                                       load_planner)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="an ez model.pt or its run directory")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, help="evaluation seed (default: the run's training seed)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--simulations", type=int, metavar="N",
                        help="search simulations for (c) (default: the checkpoint's); amplification grows with them")
    parser.add_argument("--sweep", default=",".join(map(str, DEFAULT_SWEEP)), metavar="N,N,...",
                        help="also run the search at each of these simulation counts, 0 being the policy prior "
                             "alone (default: %(default)s; '' for none)")
    parser.add_argument("--no-sweep", dest="sweep", action="store_const", const="", help="no simulation sweep")
    parser.add_argument("--threshold", type=float, metavar="R",
                        help="return at which the prior alone counts as at the ceiling, where the search "
                             "amplification is not measured (default: the environment's reward_threshold)")
    parser.add_argument("--transfer", metavar="FILE",
                        help="a transfer study's transfer.json (train.py transfer): report its median scores "
                             "beside the audit, competence under swapped objectives")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--write", action="store_true",
                        help="write audit.json in the checkpoint's run directory (read by train.py compare)")
    parser.add_argument("--out", metavar="FILE", help="write the JSON report to FILE (a .json path or a folder)")
    add_env_arguments(parser)
    add_objective_arguments(parser)


def run(args: argparse.Namespace) -> int:
    check_shared_flags(args)
    check_env_arguments(args)
    sweep = parse_sweep(args.sweep)
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise ValueError(f"--threshold must be a finite return, got {args.threshold}")
    if args.write and asks_for_env_change(args):
        raise ValueError("--write puts audit.json in the run directory, where `train.py compare` reads the run's "
                         "audit on its own environment; with --env, --env-kwargs or --wrapper write the report "
                         "elsewhere with --out FILE.json")
    transfer = _transfer_median(args.transfer) if args.transfer else None
    agent = load_planner(args.checkpoint, args.device, "audit")
    env = resolve_env(agent, args)
    apply_objective_args(agent, args)
    if args.simulations is not None:
        agent.config.search = dataclasses.replace(agent.config.search, num_simulations=args.simulations)
    report = run_audit(agent, env.env_id, agent.seed if args.seed is None else args.seed, args.episodes,
                       env_kwargs=env.env_kwargs, wrappers=env.wrappers, simulations=sweep,
                       reward_threshold=args.threshold, transfer_median=transfer)
    report.update(checkpoint=str(args.checkpoint), checkpoint_env_id=agent.env_id)
    path = None
    if args.out or args.write:
        path = write_audit(report, args.out or args.checkpoint)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_audit(report) + (f"\n\nwrote {path}" if path else ""))
    return 0


def parse_sweep(text: str) -> List[int]:
    """--sweep '0,1,2,5' -> [0, 1, 2, 5]; '' -> [] (no sweep)."""
    try:
        counts = [int(n) for n in str(text).split(",") if n.strip()]
    except ValueError:
        raise ValueError(f"--sweep must be comma-separated simulation counts (e.g. 0,1,2,5,10), got {text!r}") from None
    try:
        return check_simulations(counts)
    except ValueError:
        raise ValueError(f"--sweep counts must be >= 0 (0: the policy prior alone), got {text!r}") from None


def _transfer_median(path: str) -> float:
    """The median % of the ez oracle after refit over a transfer study's evaluation objectives."""
    try:
        study = json.loads(open(path).read())
        return float(study["median_pct_oracle_refit"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--transfer {path}: not a transfer study's transfer.json ({type(e).__name__}: {e}); "
                         f"write one with train.py transfer") from None
