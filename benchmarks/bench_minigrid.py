#!/usr/bin/env python
"""Success of the ez agent's MiniGrid presets (`pip install -e ".[minigrid]"`).

    python benchmarks/bench_minigrid.py --envs MiniGrid-DoorKey-5x5-v0 --seeds 2,3,4 --steps 30000 \\
        --logdir runs/minigrid [--train] [--out benchmarks/results/minigrid.json]

Per env and seed it reads the finished run LOGDIR/ez_<env>_s<seed> (`train.py --env ENV --steps STEPS
--seed S --logdir LOGDIR`; with --train it runs the missing ones first, one after another) and
evaluates its final model.pt greedily on --episodes episodes of the shared evaluation protocol
(agent/evaluation.py): `success` is the share of episodes with a positive return (MiniGrid pays
1 - 0.9 * steps / max_steps at the goal, 0 otherwise), `lava_deaths` the episodes that ended
(terminated) with return 0 before the time limit, which in the Lava envs is stepping onto lava.
Also the run's own evaluation curve (mean return over 20 episodes every --eval-interval steps) and
its wall-clock. --sampled also evaluates each run acting as self-play does (root noise, an action
sampled from the visits): a greedy agent in a deterministic grid repeats any action that leaves
the state unchanged to the time limit, a sampled one cannot. The last line is JSON. Figures only;
nothing is asserted. Targets (issue 15):
DoorKey-5x5 success >= 0.95 within 30k steps on 3 of 3 seeds; LavaGapS5 success >= 0.95 with no
lava deaths.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)
from run_record import settings_over_preset, train_command  # noqa: E402


def measure(run_dir: Path, episodes: int, sampled: bool = False) -> dict:
    import numpy as np

    import envs
    from agent.evaluation import evaluate
    from agent.ez import EZAgent
    from agent.runner import RunSummary

    summary = RunSummary.load(run_dir)
    changed = settings_over_preset(summary)  # a run trained with --set is labelled by them
    agent = EZAgent.load(run_dir / EZAgent.CHECKPOINT, device="cpu")
    probe = envs.make(agent.env_id, None, wrappers=agent.env_wrappers())
    limit = probe.spec.max_episode_steps if probe.spec else None
    probe.close()
    result = evaluate(lambda obs: agent.predict(obs, deterministic=True)[0], agent.env_id, agent.seed, episodes,
                      wrappers=agent.env_wrappers())
    returns, lengths = np.asarray(result.returns), np.asarray(result.lengths)
    deaths = (returns <= 0) & (lengths < limit) if limit else np.zeros_like(returns, bool)
    extra = {}
    if sampled:  # the same agent acting as in self-play: root noise, an action sampled from the visits
        noisy = np.asarray(evaluate(lambda obs: agent.predict(obs, deterministic=False)[0], agent.env_id, agent.seed,
                                    episodes, wrappers=agent.env_wrappers()).returns)
        extra = {"sampled_success": round(float((noisy > 0).mean()), 3),
                 "sampled_mean_return": round(float(noisy.mean()), 3)}
    return {**extra, "seed": summary.seed, "env_steps": summary.env_steps,
            "success": round(float((returns > 0).mean()), 3),
            "lava_deaths": int(deaths.sum()), "episodes": episodes, "mean_return": round(float(returns.mean()), 3),
            "train_seconds": round(summary.wall_clock_s, 1), "settings_over_preset": changed,
            "train_command": train_command(summary, changed),
            "curve": [[r.env_steps, round(r.mean_return, 3)] for r in summary.history]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", default="MiniGrid-DoorKey-5x5-v0,MiniGrid-LavaGapS5-v0")
    p.add_argument("--seeds", default="2,3,4")
    p.add_argument("--steps", type=int, default=30_000)
    p.add_argument("--logdir", default="runs/minigrid")
    p.add_argument("--episodes", type=int, default=100, help="final evaluation episodes per run")
    p.add_argument("--eval-interval", type=int, default=2_000, help="with --train: the runs' evaluation interval")
    p.add_argument("--train", action="store_true", help="train the runs that have not finished (else skip them)")
    p.add_argument("--sampled", action="store_true",
                   help="also evaluate each run acting as self-play does (root noise, actions sampled from the visits)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the JSON line to this file")
    args = p.parse_args()

    import torch

    from agent.runner import finished_run, run_dir_name, train_run

    torch.set_num_threads(args.threads)
    runs, missing = {}, []
    for env_id in [e.strip() for e in args.envs.split(",") if e.strip()]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            run_dir = Path(args.logdir) / run_dir_name("ez", env_id, seed)
            if finished_run(run_dir, args.steps) is None:
                if not args.train:
                    missing.append(f"{env_id} seed {seed}")
                    continue
                train_run("ez", env_id, seed, args.steps, args.logdir, eval_interval=args.eval_interval,
                          progress_bar=False, device="cpu", audit_episodes=0, overwrite=True)
            row = measure(run_dir, args.episodes, args.sampled)
            print(f"{env_id} seed {seed}: success {row['success']:.2f}, lava deaths {row['lava_deaths']}, "
                  f"{row['env_steps']} steps, {row['train_seconds']:.0f}s", file=sys.stderr, flush=True)
            runs.setdefault(env_id, []).append(row)
    result = {"benchmark": "minigrid", "steps": args.steps, "episodes": args.episodes,
              "success": {env: {str(r["seed"]): r["success"] for r in rows} for env, rows in runs.items()},
              "runs": runs, "not_run": missing}
    emit(result, args.out)


if __name__ == "__main__":
    main()
