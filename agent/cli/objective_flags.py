"""Command-line flags that swap what the search maximizes, shared by `eval`, `explain` and `audit`.

    --objective learned | reward-only:H | pessimistic:K | '{"name": ...}'   (a built-in or a spec)
    --value MODULE:ATTR          ObservationValue: fn(predicted observations [B, ...]) -> [B]
    --latent-value MODULE:ATTR   LatentValue: an nn.Module (or a factory of one) over latents
    --reward MODULE:ATTR         ObservationReward: fn(predicted observation) credited per step
    --penalty MODULE:ATTR        Penalized: subtract --penalty-weight * fn(predicted obs) per step
    --prior learned | uniform | mixed(A)    the learned policy prior's weight in selection

All of it is applied to a loaded agent with `set_objective`, which checks plugged functions once on
a dummy batch: no retraining, and a broken function fails before the first episode.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from planners.objectives import (SHORT_NAMES, LatentValue, Objective, ObservationReward,
                                 ObservationValue, Penalized, objective_from_spec)


def add_objective_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("objective", "what the search maximizes (swapped with no retraining)")
    g.add_argument("--objective", metavar="NAME", help=f"a built-in objective: {SHORT_NAMES}")
    g.add_argument("--value", metavar="MODULE:ATTR",
                   help="a value function over predicted observations, fn(obs[B, ...]) -> [B] "
                        "(the model needs a decoder)")
    g.add_argument("--latent-value", metavar="MODULE:ATTR",
                   help="a value network over latents: an nn.Module, or a class/factory that builds one")
    g.add_argument("--reward", metavar="MODULE:ATTR",
                   help="a reward function over predicted observations, fn(obs'[B, ...]) -> [B], leaf value 0")
    g.add_argument("--horizon", type=int, help="depth limit of the tree with --reward (default: none)")
    g.add_argument("--with-reward", action="store_true",
                   help="with --value / --latent-value: keep the learned predicted rewards on the edges")
    g.add_argument("--penalty", metavar="MODULE:ATTR",
                   help="subtract --penalty-weight * fn(predicted obs) from every transition's reward")
    g.add_argument("--penalty-weight", type=float, default=1.0, metavar="W")
    g.add_argument("--prior", metavar="P",
                   help="the learned policy prior's weight in selection: learned | uniform | mixed(A). A prior "
                        "trained for the old objective can pull the search back toward it; use uniform "
                        "(or mixed) after swapping the objective")


def objective_from_args(args: argparse.Namespace, discount: float,
                        named: Optional[dict] = None) -> Optional[Objective]:
    """The objective the flags ask for, or None when they ask for no change. `named`: objectives the
    agent carries by name (e.g. 'aux:NAME', its auxiliary value heads), looked up before built-ins."""
    picked = [f for f in ("objective", "value", "latent_value", "reward") if getattr(args, f, None)]
    if len(picked) > 1:
        flags = ", ".join("--" + f.replace("_", "-") for f in picked)
        raise ValueError(f"pick one of --objective, --value, --latent-value, --reward (got {flags}); "
                         f"combine a penalty with any of them through --penalty")
    if (args.with_reward and not (args.value or args.latent_value)) or (args.horizon and not args.reward):
        raise ValueError("--with-reward goes with --value / --latent-value, and --horizon with --reward")
    if any(getattr(args, f, None) for f in ("value", "latent_value", "reward", "penalty")):
        _import_from_cwd()
    base: Optional[Objective] = None
    if args.objective and args.objective in (named or {}):
        base = named[args.objective]
    elif args.objective:
        base = objective_from_spec(args.objective, discount=discount)
    elif args.value:
        base = ObservationValue(args.value, with_reward=args.with_reward, discount=discount)
    elif args.latent_value:
        base = LatentValue(args.latent_value, with_reward=args.with_reward, discount=discount)
    elif args.reward:
        base = ObservationReward(args.reward, horizon=args.horizon, discount=discount)
    if args.penalty:
        return Penalized(base or objective_from_spec("learned", discount=discount), args.penalty,
                         args.penalty_weight)
    return base


def apply_objective_args(agent, args: argparse.Namespace) -> None:
    """Set the objective and the prior setting the flags ask for on a loaded agent (validated)."""
    named = agent.named_objectives() if hasattr(agent, "named_objectives") else None
    objective = objective_from_args(args, agent.objective.discount, named)
    if objective is not None:
        agent.set_objective(objective)
    if getattr(args, "prior", None):
        agent.set_prior(args.prior)


def _import_from_cwd() -> None:
    # `python path/to/train.py --value mymod:fn` puts train.py's folder on sys.path, not the
    # folder the user runs it from, where `mymod.py` usually is.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
