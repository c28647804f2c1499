"""Command-line flags that swap what the search maximizes, shared by `eval`, `explain` and `audit`.

    --objective learned | reward-only:H | pessimistic:K | aux:NAME | '{"name": ...}'   (any registered kind)
    --value MODULE:ATTR          ObservationValue: fn(predicted observations [B, ...]) -> [B], or
                                 fn(predicted obs, root_obs) -> [B] with the real observation at
                                 each tree's root (a goal or target the agent sees)
    --latent-value MODULE:ATTR   LatentValue: an nn.Module (or a factory of one) over latents
    --reward MODULE:ATTR         ObservationReward: fn(predicted observation) credited per step
    --penalty MODULE:ATTR        Penalized: subtract --penalty-weight * fn(predicted obs) per step
                                 (--reward and --penalty take root_obs as a second argument too)
    --prior learned | uniform | mixed(A) | root-uniform | root-mixed(A)
                                 the learned policy prior's weight in selection (root-: at the root only)

All of it is applied to a loaded agent with `set_objective`, which checks plugged functions once on
a dummy batch: no retraining, and a broken function fails before the first episode. The flags the
three commands share besides these (--episodes, --seed, --device) are checked by `check_shared_flags`.
"""
from __future__ import annotations

import argparse
from typing import Optional

from common.checks import at_least, non_negative_seed
from common.imports import import_from_cwd
from nets import resolve_device
from planners.config import PRIOR_AFTER_SWAP
from planners.objectives import (LatentValue, Objective, ObservationReward, ObservationValue, Penalized,
                                 objective_from_spec, short_names)


def add_objective_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("objective", "what the search maximizes (swapped with no retraining)")
    g.add_argument("--objective", metavar="NAME", help=f"an objective by name: {short_names()}")
    g.add_argument("--value", metavar="MODULE:ATTR",
                   help="a value function over predicted observations, fn(obs[B, ...]) -> [B], or "
                        "fn(obs, root_obs) -> [B] with the real observation at each tree's root "
                        "(the model needs a decoder)")
    g.add_argument("--latent-value", metavar="MODULE:ATTR",
                   help="a value network over latents: an nn.Module, or a class/factory that builds one")
    g.add_argument("--reward", metavar="MODULE:ATTR",
                   help="a reward function over predicted observations, fn(obs'[B, ...]) -> [B] (or "
                        "fn(obs', root_obs)), leaf value 0")
    g.add_argument("--horizon", type=int, help="depth limit of the tree with --reward (default: none)")
    g.add_argument("--with-reward", action="store_true",
                   help="with --value / --latent-value: keep the learned predicted rewards on the edges")
    g.add_argument("--penalty", metavar="MODULE:ATTR",
                   help="subtract --penalty-weight * fn(predicted obs) from every transition's reward")
    g.add_argument("--penalty-weight", type=float, default=1.0, metavar="W")
    g.add_argument("--no-anchor", action="store_true",
                   help="with --value / --reward / --penalty: read predicted observations as decoded, without "
                        "taking out the model's decoding error at each tree's root (planners/anchor.py; on "
                        "by default, chosen on the transfer suite's development objectives)")
    g.add_argument("--prior", metavar="P",
                   help="the learned policy prior's weight in selection: learned | uniform | mixed(A), or "
                        "root-uniform | root-mixed(A) to flatten it at the root only. A swapped "
                        f"objective gets {PRIOR_AFTER_SWAP!r} unless this is given (chosen on the transfer suite's "
                        "development objectives); uniform or mixed(A) flattens a prior trained for the old "
                        "objective, which can pull the search back toward it")


def objective_from_args(args: argparse.Namespace, discount: float,
                        context: Optional[dict] = None) -> Optional[Objective | str]:
    """The objective the flags ask for (an Objective, or a name / spec for the agent to build with
    its own context, e.g. 'aux:NAME'), or None when they ask for no change."""
    picked = [f for f in ("objective", "value", "latent_value", "reward") if getattr(args, f, None)]
    if len(picked) > 1:
        flags = ", ".join("--" + f.replace("_", "-") for f in picked)
        raise ValueError(f"pick one of --objective, --value, --latent-value, --reward (got {flags}); "
                         f"combine a penalty with any of them through --penalty")
    if (args.with_reward and not (args.value or args.latent_value)) or (args.horizon and not args.reward):
        raise ValueError("--with-reward goes with --value / --latent-value, and --horizon with --reward")
    anchor = not getattr(args, "no_anchor", False)
    if not anchor and not (args.value or args.reward or args.penalty):
        raise ValueError("--no-anchor goes with --value, --reward or --penalty (objectives over predicted observations)")
    if any(getattr(args, f, None) for f in ("value", "latent_value", "reward", "penalty")):
        import_from_cwd()
    base: Optional[Objective] = None
    if args.objective:
        base = objective_from_spec(args.objective, discount, context)
    elif args.value:
        base = ObservationValue(args.value, with_reward=args.with_reward, discount=discount, anchor=anchor)
    elif args.latent_value:
        base = LatentValue(args.latent_value, with_reward=args.with_reward, discount=discount)
    elif args.reward:
        base = ObservationReward(args.reward, horizon=args.horizon, discount=discount, anchor=anchor)
    if args.penalty:
        return Penalized(base or objective_from_spec("learned", discount=discount), args.penalty,
                         args.penalty_weight, anchor=anchor)
    return base


def asks_for_change(args: argparse.Namespace) -> bool:
    """Whether any objective or prior flag was given."""
    return any(getattr(args, f, None) for f in ("objective", "value", "latent_value", "reward", "penalty", "prior"))


def apply_objective_args(agent, args: argparse.Namespace) -> None:
    """Set the objective and the prior setting the flags ask for on a loaded agent (validated);
    an agent that cannot swap its objective refuses them."""
    if not asks_for_change(args):
        return
    if not type(agent).can_swap_objective:
        raise ValueError(f"objective flags apply to agents that plan; a {agent.algo} checkpoint has no search "
                         f"to steer")
    objective = objective_from_args(args, agent.objective.discount, agent.objective_context())
    prior = getattr(args, "prior", None)
    if objective is not None:
        agent.set_objective(objective, prior=prior)
    elif prior:
        agent.set_prior(prior)


def check_shared_flags(args: argparse.Namespace) -> None:
    """Refuse a bad --episodes, --seed or --device of eval / explain / audit before a checkpoint is loaded."""
    if getattr(args, "episodes", None) is not None:
        at_least("--episodes", args.episodes, 1)
    if args.seed is not None:
        non_negative_seed("--seed", args.seed)
    resolve_device(args.device)


def load_planner(path, device: str, command: str):
    """Load a checkpoint of an agent that plans (has a search and a policy prior), or refuse it."""
    from agent.algorithms import load_agent
    agent = load_agent(path, device=device)
    if not type(agent).can_audit:
        raise ValueError(f"{path} holds a {agent.algo} agent; `train.py {command}` needs an agent with a search "
                         f"and a policy prior (--algo ez)")
    return agent
