"""`python train.py [--algo ez|ppo|dqn|a2c] [--env ID] [--steps N] ...`: train one run, evaluate it.

Every algorithm goes through agent.runner.train_run: the same run directory, periodic evaluation,
TensorBoard tags, config.yaml and atomic checkpoint. For ez, --config (YAML) and --set (dotted
keys) override the preset of the environment in agent/config.py; for a baseline they override its
rl-baselines3-zoo hyperparameters (zoo key names).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from agent.config import load_yaml, parse_set, resolve
from agent.runner import train_run

ALGOS = ("ez", "ppo", "dqn", "a2c")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", default="ez", choices=ALGOS, help="ez (the planner agent) or a baseline")
    parser.add_argument("--env", default="CartPole-v1", help="gymnasium environment id")
    parser.add_argument("--steps", type=int, default=20_000, help="environment steps in total")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default="runs", help="runs go to LOGDIR/<algo>_<env>_s<seed>/")
    parser.add_argument("--config", metavar="FILE", help="YAML file of settings over the preset")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="one setting, dotted for nested ones (search.num_simulations=25); repeatable")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--eval-interval", type=int, default=2_000, metavar="K",
                        help="evaluate every K environment steps")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--env-module", metavar="PKG", help="import PKG first (it registers more env ids)")
    parser.add_argument("--wrapper", dest="wrappers", action="append", default=[], metavar="MODULE:CLASS",
                        help="gymnasium wrapper applied to every env, in order; repeatable")
    parser.add_argument("--resume", metavar="PATH",
                        help="continue a run up to --steps: its resume.pt (ez) / model.zip, or its run directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--aux-value", dest="aux_values", action="append", default=[], metavar="NAME",
                        help="ez: also fit a value head NAME over latents to the returns of --reward; plug it "
                             "in later with `train.py eval --objective aux:NAME`; repeatable, one --reward each")
    parser.add_argument("--reward", dest="aux_rewards", action="append", default=[], metavar="MODULE:FN",
                        help="with --aux-value: fn(obs, action, reward, next_obs, terminated) -> [B] floats, "
                             "called on batches of real transitions")


def run(args: argparse.Namespace) -> int:
    overrides = {**(load_yaml(args.config) if args.config else {}), **parse_set(args.sets)}
    if args.aux_values or args.aux_rewards:
        if len(args.aux_values) != len(args.aux_rewards):
            raise ValueError(f"--aux-value and --reward go in pairs (--aux-value NAME --reward module:fn); got "
                             f"{len(args.aux_values)} --aux-value and {len(args.aux_rewards)} --reward")
        if args.algo != "ez":
            raise ValueError("--aux-value trains a value head over the ez agent's latents; it needs --algo ez")
        overrides["aux_values"] = [[n, r] for n, r in zip(args.aux_values, args.aux_rewards)]
    if args.algo == "ez":
        if args.env_module:
            import envs
            envs.import_env_module(args.env_module)
        resolve(args.env, overrides=overrides)  # refuse unknown keys before anything is built
    summary = train_run(args.algo, args.env, args.seed, args.steps, args.logdir,
                        eval_interval=args.eval_interval, eval_episodes=args.eval_episodes,
                        config_overrides=overrides or None, env_module=args.env_module,
                        wrappers=tuple(args.wrappers), progress_bar=not args.no_progress,
                        device=args.device, resume=_resume_path(args))
    print(f"final | steps {summary.env_steps} | return {summary.final_mean_return:.2f} "
          f"± {summary.final_std_return:.2f} | {summary.wall_clock_s:.1f}s | {summary.run_dir}")
    return 0


def _resume_path(args) -> str | None:
    if args.resume is None:
        return None
    path = Path(args.resume)
    if path.is_dir():
        path = path / ("resume.pt" if args.algo == "ez" else "model.zip")
    if not path.exists():
        raise FileNotFoundError(f"--resume {args.resume}: no checkpoint at {path}")
    return str(path)
