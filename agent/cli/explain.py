"""`python train.py explain --checkpoint PATH [--obs JSON] [--json]`: what one search considered.

Prints the root table (visits, prior, predicted reward, Q and its parts under the objective), the
principal variation with predicted observations when the model has a decoder, the objective and
the capacity report. The objective flags (--objective, --value, --prior, ...) apply first, so the
same observation can be explained under a swapped objective. The environment flags (--env,
--env-kwargs, --wrapper; agent/cli/env_flags.py) pick the environment the default observation comes
from, checked against the checkpoint's spaces.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

import envs
from agent.evaluation import eval_seed
from agent.studies.explain import explain, format_explanation
from agent.cli.env_flags import EnvChoice, add_env_arguments, check_env_arguments, resolve_env
from agent.cli.objective_flags import (add_objective_arguments, apply_objective_args, check_shared_flags,
                                       load_planner)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="an ez model.pt or its run directory")
    parser.add_argument("--obs", metavar="JSON",
                        help="the observation, a JSON list (default: the first observation of evaluation "
                             "episode 0 of --seed)")
    parser.add_argument("--seed", type=int, help="evaluation seed for the default observation (default: the run's)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_env_arguments(parser)
    add_objective_arguments(parser)


def run(args: argparse.Namespace) -> int:
    check_shared_flags(args)
    check_env_arguments(args)
    agent = load_planner(args.checkpoint, args.device, "explain")
    env = resolve_env(agent, args)
    apply_objective_args(agent, args)
    obs = _observation(agent, args, env)
    report = {**explain(agent, obs), **env.report(agent)}
    print(json.dumps(report) if args.json else format_explanation(report))
    return 0


def _observation(agent, args, env: EnvChoice) -> np.ndarray:
    if args.obs is not None:
        try:
            obs = np.asarray(json.loads(args.obs), dtype=agent.obs_dtype)
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"--obs must be a JSON list of numbers, got {args.obs!r} ({e})") from e
        if obs.shape != agent.obs_shape:
            raise ValueError(f"--obs has shape {obs.shape}, but {agent.env_id} observations have shape "
                             f"{agent.obs_shape}")
        if not np.isfinite(obs).all():  # json.loads reads NaN and Infinity; the model cannot
            raise ValueError(f"--obs must hold finite numbers, got {args.obs!r} (NaN or inf at positions "
                             f"{np.argwhere(~np.isfinite(obs)).tolist()})")
        return obs
    made = envs.make(env.env_id, None, wrappers=env.wrappers, env_module=agent.env_module, **env.env_kwargs)
    seed = agent.seed if args.seed is None else args.seed
    obs, _ = made.reset(seed=eval_seed(seed))
    made.close()
    return obs

