"""`python train.py refit --checkpoint RUN_DIR --reward mymod:fn`: the search's objective for a new
reward, fitted from the run's stored replay with no environment steps (agent/refit.py).

The reward function gets batched numpy arrays, fn(obs, action, reward, next_obs, terminated) -> [B]
(the signature of --aux-reward); 'mymod:factory(key=value)' builds one with literal arguments. If
it has an `ends(next_obs) -> [B] bool` method, the episodes it ends are absorbing too. Writes a
checkpoint (default RUN_DIR/refit-NAME.pt) whose objective is `refit:NAME`; evaluate it with
`train.py eval --checkpoint RUN_DIR/refit-NAME.pt`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from agent.ez import EZAgent
from agent.refit import refit
from common.checks import at_least
from nets import resolve_device


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="an ez run directory or its resume.pt")
    p.add_argument("--reward", required=True, metavar="MODULE:ATTR", help="the new reward over real transitions")
    p.add_argument("--name", default="refit", help="the objective's name, refit:NAME (default refit)")
    p.add_argument("--steps", type=int, default=3000, help="gradient steps per head (default 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE", help="checkpoint to write (default RUN_DIR/refit-NAME.pt)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    at_least("--steps", args.steps, 1)
    resolve_device(args.device)
    if not args.name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"--name must be letters, digits, '-' or '_', got {args.name!r}")
    path = Path(args.checkpoint)
    resume = path / EZAgent.RESUME if path.is_dir() else path
    if not resume.exists():
        raise FileNotFoundError(f"--checkpoint {args.checkpoint}: no {EZAgent.RESUME} there; refit reads the replay "
                                f"a run keeps in its resume checkpoint")
    agent = EZAgent.load(resume, device=args.device)
    report = refit(agent, args.reward, name=args.name, steps=args.steps, seed=args.seed,
                   log=None if args.json else print)
    out = Path(args.out) if args.out else resume.parent / f"refit-{args.name}.pt"
    agent.save(out)
    if args.json:
        print(json.dumps({**report.to_dict(), "checkpoint": str(out)}))
    else:
        print(f"wrote {out} (objective: {agent.objective.describe()})")
    return 0
