#!/usr/bin/env python
"""Sample efficiency and speed of the default ez agent on CartPole-v1, and of PPO beside it.

    python benchmarks/bench_cartpole.py --seeds 0,1,2 [--steps 20000] [--eval-interval 1000]
        [--ppo [--ppo-steps 100000]] [--stop-when-solved] [--give-up-at N] [--set KEY=VALUE] [--out FILE]

Per seed: environment steps and wall-clock (training + evaluations) to the first evaluation whose
mean return over 20 deterministic episodes is >= 475, the final evaluation's return, the training
throughput (environment steps per second of training alone, evaluations left out), the peak
resident memory of the process and the learning curve (`curve`: [env steps, mean return] per
evaluation; benchmarks/plot_curves.py draws files of them side by side). Each seed runs in its own process so that peak memory is its own.
With --ppo, Stable-Baselines3 PPO with its zoo settings runs the same seeds through the same
evaluation protocol and stopping rule, each right after the ez seed (one process at a time), and
`ppo_wall_s_to_475` lists its wall-clock. The last line is JSON. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from child_process import run_child  # noqa: E402  (benchmarks/, the script's own folder)
from result_line import emit  # noqa: E402

TARGET = 475.0


def one_seed(args) -> dict:
    import torch

    from agent.algorithms import make_agent
    from agent.callbacks import EvalCallback
    from agent.config import resolve_config

    torch.set_num_threads(args.threads)
    if args.algo == "ez":
        agent = make_agent("ez", "CartPole-v1", config=resolve_config("CartPole-v1", sets=args.set),
                           seed=args.seed, device="cpu")
    else:
        agent = make_agent(args.algo, "CartPole-v1", seed=args.seed, device="cpu")
    steps = args.steps if args.algo == "ez" else args.ppo_steps
    start = time.time()
    evaluation = EvalCallback("CartPole-v1", args.seed, args.eval_interval, args.eval_episodes,
                              write=lambda line: print(f"  {args.algo} seed {args.seed} | {line}", file=sys.stderr,
                                                       flush=True),
                              stop_at_return=TARGET if args.stop_when_solved else None)
    callbacks = [evaluation]
    if args.give_up_at and args.algo == "ez":
        from stable_baselines3.common.callbacks import BaseCallback

        class GiveUp(BaseCallback):  # the run keeps the schedules of --steps; it just ends sooner
            def _on_step(self) -> bool:
                return self.num_timesteps < args.give_up_at

        callbacks.append(GiveUp())
    agent.learn(steps, progress_bar=False, callback=callbacks)
    total = time.time() - start
    solved = next((r for r in evaluation.history if r.mean_return >= TARGET), None)
    final = evaluation.history[-1]
    evaluating = sum(r.eval_seconds for r in evaluation.history)
    return {"algo": args.algo, "seed": args.seed, "steps_to_475": solved and solved.env_steps,
            "seconds_to_475": solved and round(solved.wall_clock_s, 1),
            "env_steps": agent.num_timesteps, "final_return": round(final.mean_return, 2),
            "total_seconds": round(total, 1),
            "train_env_steps_per_s": round(agent.num_timesteps / (total - evaluating), 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "curve": [[r.env_steps, round(r.mean_return, 2)] for r in evaluation.history]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--eval-interval", type=int, default=1_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override; repeatable")
    p.add_argument("--stop-when-solved", action="store_true",
                   help="stop a seed at its first evaluation >= 475 (final return is then that evaluation)")
    p.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    p.add_argument("--give-up-at", type=int, metavar="N",
                   help="ez: stop an unsolved run after N env steps, its schedules still planned for --steps")
    p.add_argument("--ppo", action="store_true", help="also run SB3 PPO (zoo settings) on the same seeds")
    p.add_argument("--ppo-steps", type=int, default=100_000, help="PPO's budget (the zoo's: 100,000)")
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)  # one seed, in a child process
    p.add_argument("--algo", default="ez", help=argparse.SUPPRESS)  # of the child process
    args = p.parse_args()
    if args.seed is not None:
        print(json.dumps(one_seed(args)))
        return
    rows, ppo_rows = [], []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for algo in ("ez", "ppo") if args.ppo else ("ez",):
            cmd = [sys.executable, __file__, "--seed", str(seed), "--algo", algo, *_without_out(sys.argv[1:])]
            out = run_child(cmd, stdout=subprocess.PIPE, env=os.environ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            (rows if algo == "ez" else ppo_rows).append(row)
            print(f"{algo} seed {seed}: steps to 475 {row['steps_to_475']}, {row['seconds_to_475']} s; "
                  f"final return {row['final_return']} at {row['env_steps']} steps; training "
                  f"{row['train_env_steps_per_s']} env steps/s; peak memory {row['peak_rss_mb']} MB", flush=True)
    result = {"benchmark": "cartpole", "target": TARGET, "seeds": rows,
              "steps_to_475": [r["steps_to_475"] for r in rows],
              "wall_s_to_475": [r["seconds_to_475"] for r in rows],
              "env_steps_per_s": [r["train_env_steps_per_s"] for r in rows]}
    if args.ppo:
        result.update({"ppo_seeds": ppo_rows, "ppo_steps_to_475": [r["steps_to_475"] for r in ppo_rows],
                       "ppo_wall_s_to_475": [r["seconds_to_475"] for r in ppo_rows]})
    emit(result, args.out)


def _without_out(argv):
    """The child processes measure one seed each and write nothing."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out="):
            out.append(a)
    return out


if __name__ == "__main__":
    main()
