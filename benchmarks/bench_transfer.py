#!/usr/bin/env python
"""The transfer suite's headline numbers (README, "Transfer"), last line JSON.

    python benchmarks/bench_transfer.py --study results/transfer [--out benchmarks/results/transfer.json]

Reads a study written by `python train.py transfer --out DIR` (its results.csv: every measurement)
and prints the medians over the suite's evaluation objectives: % of the ez oracle after refit and
zero-shot, with the prior after a swap chosen on the development objectives, the refit wall-clock
as a fraction of the oracle's, and one row per objective. Run the study first; this script trains
nothing, so a figure here always traces to the study's files.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", required=True, help="a train.py transfer output directory")
    p.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    args = p.parse_args()
    from agent.studies.transfer import PRIORS, _no_nan, read_measurements, summary
    from agent.studies.transfer_suite import SUITE
    rows = read_measurements(Path(args.study) / "results.csv")
    if not rows:
        raise SystemExit(f"{args.study} holds no results.csv: run python train.py transfer --out {args.study}")
    priors = [p for p in PRIORS if any(m.prior == p for m in rows)]
    s = summary(rows, SUITE, priors, command=f"python train.py transfer --out {args.study}")
    for e in s["objectives"]:
        print(f"{e['objective']:<28} {e['split']:<5} zero-shot {e.get('pct_oracle_zero_shot', float('nan')):6.0f} %  "
              f"refit {e.get('pct_oracle_refit', float('nan')):6.0f} %  floor {e.get('pct_oracle_floor', float('nan')):6.0f} %")
    emit(_no_nan(s), args.out)


if __name__ == "__main__":
    main()
