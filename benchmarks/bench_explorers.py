#!/usr/bin/env python
"""Explorers on and off (agent/explore.py), side by side: what they cost the training task and
what they buy a swapped objective (README, "Coverage off the training policy").

    python benchmarks/bench_explorers.py --runs OFF_DIR ON_DIR --studies OFF_STUDY ON_STUDY
                                         [--coverage FILE ...] [--out FILE]

OFF_DIR / ON_DIR: log directories of the same runs (`python train.py --env E --steps N --seed S
--logdir DIR --set explore_fraction=F ...`), one run directory per environment in each.
OFF_STUDY / ON_STUDY: `train.py transfer` studies whose base agents are those runs (`--base
ENV=RUN_DIR`), measured with the same oracles. --coverage: bench_model_coverage.py result files
of the two models (labels 'no-explorers' and 'explorers'), whose off-policy errors are copied in.
Reported per environment: the training task's evaluation curve and final return of each arm,
and the transfer scores (zero-shot at the prior after a swap, refit at refit's prior, both
PRIOR_AFTER_SWAP / PRIOR_OWN_PRIOR) per objective and as dev / eval medians. Trains nothing. Last
line JSON.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)


def curves(logdir: Path) -> dict:
    """{env run directory name: [[env_steps, mean_return], ...]} of every finished run in logdir."""
    out = {}
    for run in sorted(p for p in logdir.iterdir() if (p / "evaluations.csv").exists()):
        with open(run / "evaluations.csv") as f:
            out[run.name] = [[int(r["env_steps"]), float(r["mean_return"])] for r in csv.DictReader(f)]
    return out


def transfer_scores(study: Path, zero_shot_prior: str, refit_prior: str) -> dict:
    from agent.studies.transfer import read_measurements, table
    from agent.studies.transfer_suite import SUITE
    rows = read_measurements(study / "results.csv")
    measured = {m.objective for m in rows if m.method == "zero_shot"}
    objectives = [o for o in SUITE if o.name in measured]
    entries = table(rows, objectives, zero_shot_prior, refit_prior)
    return {e["objective"]: {"split": e["split"], "pct_oracle_zero_shot": e.get("pct_oracle_zero_shot"),
                             "pct_oracle_refit": e.get("pct_oracle_refit"),
                             "zero_shot_success": e.get("zero_shot_success"),
                             "refit_success": e.get("refit_success")} for e in entries}


def off_policy_errors(rows) -> dict:
    """Per model, the mean k-step error over every policy but its own, leaving out policies whose
    episodes are all shorter than k (bench_model_coverage.py's rows)."""
    import numpy as np
    out = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model and r["policy"] != f"trained ({model})"]
        keys = [k for k in mine[0] if k.startswith("mse_")]
        out[model] = {k: float(np.nanmean([r[k] for r in mine])) for k in keys}
    return out


def median(values) -> float:
    v = sorted(x for x in values if x is not None and not math.isnan(x))
    if not v:
        return float("nan")
    return v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs=2, required=True, metavar=("OFF_DIR", "ON_DIR"))
    p.add_argument("--studies", nargs=2, required=True, metavar=("OFF_STUDY", "ON_STUDY"))
    p.add_argument("--coverage", nargs="*", default=[], metavar="FILE")
    p.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    args = p.parse_args()
    from planners.config import PRIOR_AFTER_SWAP, PRIOR_OWN_PRIOR

    result = {"benchmark": "explorers", "zero_shot_prior": PRIOR_AFTER_SWAP, "refit_prior": PRIOR_OWN_PRIOR}
    for arm, logdir, study in (("off", args.runs[0], args.studies[0]), ("on", args.runs[1], args.studies[1])):
        c = curves(Path(logdir))
        s = transfer_scores(Path(study), PRIOR_AFTER_SWAP, PRIOR_OWN_PRIOR)
        medians = {f"{split}_median_{key}": median(v[key] for v in s.values() if v["split"] == split)
                   for split in ("dev", "eval") for key in ("pct_oracle_zero_shot", "pct_oracle_refit")}
        result[arm] = {"curves": c, "final_return": {k: v[-1][1] for k, v in c.items()}, "transfer": s, **medians}
        print(f"explorers {arm}:")
        for run, curve in c.items():
            print(f"  {run:36s} " + "  ".join(f"{n}:{r:.2f}" for n, r in curve))
        for name, v in s.items():
            print(f"  {name:28s} {v['split']:4s} zero-shot {v['pct_oracle_zero_shot']} %  refit {v['pct_oracle_refit']} %")
        print("  " + "  ".join(f"{k} {v:.0f}" for k, v in medians.items()))
    for path in args.coverage:
        data = json.loads(Path(path).read_text().strip().splitlines()[-1])
        off = off_policy_errors(data["rows"])
        result.setdefault("coverage", {})[data["env"]] = {"off_policy_mse": off, "file": path}
        print(f"coverage {data['env']}: " + json.dumps(off))
    emit(result, args.out)


if __name__ == "__main__":
    main()
