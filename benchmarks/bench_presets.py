#!/usr/bin/env python
"""Final returns of ez runs of the classic-control presets (issue 13's presets target).

    python benchmarks/bench_presets.py --runs DIR [DIR ...] [--keep FILE] [--out benchmarks/results/presets.json]

Each DIR is a run directory `train.py` wrote (its result.json and config.yaml; for a run stopped
before its budget, `finished` false, its evaluations.csv up to the last evaluation). Per run: the
env, seed, environment steps, the final evaluation's mean return, the first evaluation's steps at
the target return (`steps_to_target`, None if none reached it), the evaluation curve, the settings it
used beside its env's preset, the best mean return its explorers logged (if it had any), and the
`train.py` command that reproduces it. The zoo's targets
(issue 13): MountainCar-v0 -100.8 (DQN at 120k steps) within 24,000 steps; LunarLander-v3 242
(PPO at 1M) within 200,000. --keep FILE carries over the rows of an earlier result of this script
(runs whose directories are gone), except those a given run replaces: the same train.py command.
The last line is JSON. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)
from run_record import settings_over_preset, train_command  # noqa: E402

TARGETS = {"MountainCar-v0": (-100.8, 24_000), "LunarLander-v3": (242.0, 200_000)}


def one_run(run_dir: Path) -> dict:
    summary, finished = load_run(run_dir)
    changed = settings_over_preset(summary)
    target = TARGETS.get(summary.env_id)
    return {"env": summary.env_id, "seed": summary.seed, "env_steps": summary.env_steps, "finished": finished,
            "final_return": round(summary.final_mean_return, 2),
            "target": target and {"return": target[0], "within_steps": target[1]},
            "steps_to_target": target and next((r.env_steps for r in summary.history if r.mean_return >= target[0]), None),
            "settings_over_preset": changed, "train_seconds": round(summary.wall_clock_s, 1),
            "train_command": train_command(summary, changed),
            "curve": [[r.env_steps, round(r.mean_return, 2)] for r in summary.history],
            "explorer_best_return": explorer_best_return(run_dir)}


def load_run(run_dir: Path):
    """(summary, finished): a finished run's result.json, or for a run stopped before its budget
    the same fields read from its config.yaml and evaluations.csv, up to its last evaluation."""
    import csv

    import yaml

    from agent.callbacks import EvalRecord
    from agent.runner import RunSummary

    try:
        return RunSummary.load(run_dir), True
    except FileNotFoundError:
        pass
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    with open(run_dir / "evaluations.csv") as f:
        history = [EvalRecord(int(r["env_steps"]), float(r["wall_clock_s"]), float(r["mean_return"]),
                              float(r["std_return"])) for r in csv.DictReader(f)]
    if not history:
        raise SystemExit(f"{run_dir}: no result.json and no evaluation yet")
    last = history[-1]
    return RunSummary(run_dir=run_dir, history=history, final_mean_return=last.mean_return,
                      final_std_return=last.std_return, wall_clock_s=last.wall_clock_s, parameters=0,
                      algo=config["algo"], env_id=config["env"], seed=int(config["seed"]),
                      env_steps=last.env_steps, config=config), False


def explorer_best_return(run_dir: Path):
    """The best of the explorers' logged mean episode returns (TensorBoard `explore/ep_rew_mean`,
    over their last 20 episodes), or None for a run without explorers: whether they ever reached
    what the training objective pays for."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    if "explore/ep_rew_mean" not in events.Tags()["scalars"]:
        return None
    return round(max(e.value for e in events.Scalars("explore/ep_rew_mean")), 2)


def row_key(row: dict) -> str:
    """What makes two rows the same run: the train.py command (env, seed, budget, settings, wrappers)."""
    return row["train_command"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, metavar="DIR")
    p.add_argument("--keep", metavar="FILE", help="an earlier result of this script whose rows to carry over")
    p.add_argument("--out", metavar="FILE")
    args = p.parse_args()
    runs, earlier = [one_run(Path(d)) for d in args.runs], {}
    if args.keep:
        same, earlier = {row_key(r) for r in runs}, json.loads(Path(args.keep).read_text())
        runs = [r for r in earlier["runs"] if row_key(r) not in same] + runs
    for r in runs:
        print(f"{r['env']} seed {r['seed']} {r['settings_over_preset'] or '(preset)'}: final return "
              f"{r['final_return']} at {r['env_steps']} steps, target first at {r.get('steps_to_target')}")
    kept = {"kept_from": earlier["command"]} if earlier else {}  # the command that wrote the kept rows
    emit({"benchmark": "presets", "runs": runs, **kept}, args.out)


if __name__ == "__main__":
    main()
