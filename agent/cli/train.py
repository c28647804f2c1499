"""`python train.py [--algo ez|ppo|dqn|a2c] [--env ID] [--steps N] ...`: train one run, evaluate it.

Every algorithm goes through agent.runner.train_run: the same run directory, periodic evaluation,
TensorBoard tags, config.yaml and atomic checkpoints. For ez, --config (YAML) and --set (dotted
keys) override the preset of the environment in agent/config.py; for a baseline they override its
rl-baselines3-zoo hyperparameters (zoo key names).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from agent.algorithms import ALGORITHMS, algorithm
from agent.config import load_yaml, parse_set
from agent.runner import check_run_options, train_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", default="ez", choices=list(ALGORITHMS), help="ez (the planner agent) or a baseline")
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
                        help="gymnasium wrapper applied to every env, in order; repeatable. Arguments as "
                             "literals: 'gymnasium.wrappers:DiscretizeAction(bins=5)'")
    parser.add_argument("--resume", metavar="PATH",
                        help="continue a run up to --steps: its run directory or resume checkpoint; --set then "
                             "changes settings that may change mid-run (search, learning rate, ...)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run in the same run directory (otherwise refused)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--checkpoint-interval", type=int, default=10_000, metavar="N",
                        help="write the resume checkpoint every N environment steps (and at the end)")
    parser.add_argument("--checkpoint-seconds", type=float, default=600.0, metavar="S",
                        help="... and every S seconds of wall-clock")
    parser.add_argument("--log-interval", type=int, default=200, metavar="N",
                        help="TensorBoard scalars every N environment steps")
    parser.add_argument("--audit-episodes", type=int, default=5, metavar="N",
                        help="ez: episodes of the search-amplification audit after training (0: none)")
    parser.add_argument("--aux-value", dest="aux_values", action="append", default=[], metavar="NAME",
                        help="ez: also fit a value head NAME over latents to the returns of --aux-reward; plug "
                             "it in later with `train.py eval --objective aux:NAME`; repeatable, one "
                             "--aux-reward each")
    parser.add_argument("--aux-reward", dest="aux_rewards", action="append", default=[], metavar="MODULE:FN",
                        help="with --aux-value: fn(obs, action, reward, next_obs, terminated) -> [B] floats, "
                             "called on batches of real transitions")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="ez: self-play on N Ray actors, the learner in this process (0: the single-process "
                             "loop). Needs the extra: pip install -e \".[ray]\"")
    parser.add_argument("--reanalyze-workers", type=int, default=0, metavar="M",
                        help="with --workers: M Ray actors search the learner's reanalyzed policy targets "
                             "(0: the learner does)")
    parser.add_argument("--weight-sync-interval", type=int, default=10, metavar="K",
                        help="with --workers: publish the learner's weights to the actors every K training steps")
    parser.add_argument("--ray-address", metavar="auto|HOST:PORT",
                        help="with --workers: join this Ray cluster (default: a local Ray instance for the run)")


def run(args: argparse.Namespace) -> int:
    # First thing: a bad number or device must not cost a config check, an env build or the old run.
    check_run_options(steps=args.steps, seed=args.seed, eval_interval=args.eval_interval,
                      eval_episodes=args.eval_episodes, device=args.device,
                      checkpoint_interval=args.checkpoint_interval, checkpoint_seconds=args.checkpoint_seconds,
                      log_interval=args.log_interval, audit_episodes=args.audit_episodes,
                      workers=args.workers, reanalyze_workers=args.reanalyze_workers,
                      weight_sync_interval=args.weight_sync_interval, ray_address=args.ray_address)
    overrides = {**(load_yaml(args.config) if args.config else {}), **parse_set(args.sets)}
    cls = algorithm(args.algo)
    if args.aux_values or args.aux_rewards:
        if len(args.aux_values) != len(args.aux_rewards):
            raise ValueError(f"--aux-value and --aux-reward go in pairs (--aux-value NAME --aux-reward module:fn); "
                             f"got {len(args.aux_values)} --aux-value and {len(args.aux_rewards)} --aux-reward")
        if not cls.can_swap_objective:
            raise ValueError(f"--aux-value trains a value head over a planner's latents, to plug in as its "
                             f"objective; {cls.algo} does not plan (use --algo ez)")
        overrides["aux_values"] = [[n, r] for n, r in zip(args.aux_values, args.aux_rewards)]
    if args.env_module:
        import envs
        envs.import_env_module(args.env_module)
    # Refuse unknown keys before anything is built (a resumed run's own config judges the rest on load).
    cls.check_config(args.env, overrides, resuming=args.resume is not None)
    summary = train_run(args.algo, args.env, args.seed, args.steps, args.logdir,
                        eval_interval=args.eval_interval, eval_episodes=args.eval_episodes,
                        config_overrides=overrides or None, env_module=args.env_module,
                        wrappers=tuple(args.wrappers), progress_bar=not args.no_progress,
                        device=args.device, resume=_resume_path(args, cls),
                        checkpoint_interval=args.checkpoint_interval, checkpoint_seconds=args.checkpoint_seconds,
                        log_interval=args.log_interval, audit_episodes=args.audit_episodes,
                        overwrite=args.overwrite, workers=args.workers,
                        reanalyze_workers=args.reanalyze_workers, weight_sync_interval=args.weight_sync_interval,
                        ray_address=args.ray_address)
    print(f"final | steps {summary.env_steps} | return {summary.final_mean_return:.2f} "
          f"± {summary.final_std_return:.2f} | {summary.wall_clock_s:.1f}s | {summary.run_dir}")
    return 0


def _resume_path(args, cls) -> str | None:
    if args.resume is None:
        return None
    path = Path(args.resume)
    if path.is_dir():
        path = path / cls.RESUME
    if not path.exists():
        raise FileNotFoundError(f"--resume {args.resume}: no checkpoint at {path}")
    return str(path)
