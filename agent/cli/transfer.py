"""`python train.py transfer`: the suite's objectives swapped into trained agents, scored against
agents trained on each objective (agent/studies/transfer.py).

    python train.py transfer --out results/transfer                       # the whole suite
    python train.py transfer --envs glasszero/Corridor-v0 --split dev --out results/transfer-dev
    python train.py transfer --envs CartPole-v1 --env MyShiftedCartPole-v0 --env-module mymod --out results/shifted

Writes OUT/results.csv (every measurement), OUT/summary.md, OUT/transfer.png and OUT/transfer.json
(medians over the evaluation objectives; the prior after a swap chosen on the dev objectives).
--resume reuses the runs and rows already in OUT.
"""
from __future__ import annotations

import argparse
import shlex
from types import SimpleNamespace
import sys
from pathlib import Path

from tqdm.auto import tqdm

from agent.algorithms import parse_algorithms
from agent.cli.env_flags import add_env_arguments, asks_for_env_change, check_env_arguments, resolve_env
from agent.studies.transfer import PRIORS, TransferRun, summary, write_report
from agent.studies.transfer_suite import BUDGETS, SUITE, select
from common.checks import at_least, non_negative_seed
from nets import resolve_device
from planners.config import SearchConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="results/transfer", help="output directory (default results/transfer)")
    p.add_argument("--envs", help="comma-separated base environments of the suite to run (default: all)")
    p.add_argument("--split", default="all", choices=("dev", "eval", "all"), help="objectives to run (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes per measurement (default 20)")
    p.add_argument("--priors", default=",".join(PRIORS),
                   help=f"prior settings measured after a swap (default {','.join(PRIORS)})")
    p.add_argument("--oracles", default="ez,ppo", help="algorithms trained on each objective (default ez,ppo)")
    p.add_argument("--refit-steps", type=int, default=3000, help="gradient steps of each refit (default 3000)")
    p.add_argument("--steps", action="append", default=[], metavar="ENV=N",
                   help="training budget of a base environment (repeatable; default: "
                        + ", ".join(f"{k}={v}" for k, v in BUDGETS.items()) + ")")
    p.add_argument("--base", action="append", default=[], metavar="ENV=RUN_DIR",
                   help="use the ez run in RUN_DIR (trained on ENV's own reward; it keeps its replay in resume.pt) "
                        "as the base agent of ENV instead of training one (repeatable)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--resume", action="store_true", help="reuse the runs and measurements already in OUT")
    p.add_argument("--progress", action="store_true", help="progress bars for the training runs")
    add_env_arguments(p)  # --env ID etc.: measure on another environment (one --envs base only)


def _budgets(items) -> dict:
    out = {}
    for item in items:
        env, sep, n = item.rpartition("=")
        if not sep or not env:
            raise ValueError(f"--steps takes ENV=N, got {item!r}")
        try:
            out[env] = int(n)
        except ValueError:
            raise ValueError(f"--steps {item!r}: N must be an integer") from None
        at_least(f"--steps {env}", out[env], 1)
    return out


def _bases(items) -> dict:
    from agent.checkpoint import load as load_checkpoint
    out = {}
    for item in items:
        env, sep, path = item.partition("=")
        if not sep or not env or not path:
            raise ValueError(f"--base takes ENV=RUN_DIR, got {item!r}")
        resume = Path(path) / "resume.pt"
        if not resume.exists():
            raise ValueError(f"--base {item}: {resume} does not exist; the base agent's run directory must keep "
                             f"its resume.pt (refit reads the replay stored there)")
        payload = load_checkpoint(resume)
        if (payload.get("algo"), payload.get("env_id")) != ("ez", env):
            raise ValueError(f"--base {item}: that run is {payload.get('algo')} on {payload.get('env_id')}, "
                             f"not ez on {env}")
        out[env] = Path(path)
    return out


def _evaluation_env(args: argparse.Namespace, objectives):
    """The environment every measurement runs on when --env (or --wrapper, --env-kwargs) is given,
    checked against the base environment's spaces; None: each objective's own."""
    check_env_arguments(args)
    if not asks_for_env_change(args):
        return None
    bases = sorted({o.base_env for o in objectives})
    if len(bases) != 1:
        raise ValueError(f"--env/--wrapper/--env-kwargs measure one base environment's objectives on another "
                         f"environment: name that base with --envs (one of {', '.join(sorted(BUDGETS))}); "
                         f"this selection has {len(bases)}: {', '.join(bases)}")
    # The base agent need not exist yet: the environment is checked as its env (suite bases have no
    # wrappers) before any agent's input; each acting agent adds its own observation history on
    # top (TransferRun._evaluate), after the task's reward wrapper.
    base = SimpleNamespace(env_id=bases[0], wrappers=[], env_module=None,
                           env_wrappers=lambda wrappers=None: list(wrappers or ()))
    return resolve_env(base, args)


def run(args: argparse.Namespace) -> int:
    non_negative_seed("--seed", args.seed)
    at_least("--episodes", args.episodes, 1)
    at_least("--refit-steps", args.refit_steps, 1)
    resolve_device(args.device)
    priors = [p.strip() for p in args.priors.split(",") if p.strip()]
    for p in priors:
        try:
            SearchConfig(prior=p)
        except ValueError as e:
            raise ValueError(f"--priors: {e}") from None
    oracles = parse_algorithms(args.oracles) if args.oracles else []
    if "ez" not in oracles:
        raise ValueError("--oracles must include ez: scores are percentages of the ez oracle")
    objectives = select(SUITE, [e.strip() for e in args.envs.split(",")] if args.envs else None, args.split)
    evaluation_env = _evaluation_env(args, objectives)
    out = Path(args.out)
    if not args.resume and (out / "results.csv").exists():
        raise ValueError(f"{out} already holds a transfer study; continue it with --resume or pick another --out")
    study = TransferRun(out, seed=args.seed, episodes=args.episodes, priors=priors, oracles=oracles,
                        refit_steps=args.refit_steps, budgets=_budgets(args.steps), bases=_bases(args.base),
                        device=args.device, progress_bar=args.progress, write=tqdm.write,
                        evaluation_env=evaluation_env)
    rows = study.run(objectives)
    command = "python train.py transfer " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    s = summary(rows, objectives, priors, command)
    write_report(s, out)
    print((out / "summary.md").read_text())
    print(f"wrote {out / 'summary.md'}, {out / 'transfer.json'}, {out / 'transfer.png'}, {out / 'results.csv'}")
    return 0
