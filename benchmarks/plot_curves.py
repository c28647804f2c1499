#!/usr/bin/env python
"""Learning curves of bench_cartpole.py result files, side by side: one PNG, evaluation mean
return against environment steps, each file's seeds thin and their mean thick.

    python benchmarks/plot_curves.py FILE[=LABEL] FILE[=LABEL] ... --out PNG [--title TEXT]

A file whose runs stopped early (--stop-when-solved) contributes its curves up to where each
stopped; the mean is taken over the seeds still running at each evaluation. The last line is JSON:
per label, the mean curve it drew.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from result_line import emit  # noqa: E402


def mean_curve(rows) -> list:
    """[[env steps, mean over the seeds evaluated there], ...]."""
    by_step = defaultdict(list)
    for row in rows:
        for steps, value in row["curve"]:
            by_step[steps].append(value)
    return [[steps, round(sum(v) / len(v), 2)] for steps, v in sorted(by_step.items())]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE[=LABEL]")
    p.add_argument("--out", required=True, metavar="PNG")
    p.add_argument("--title", default="CartPole-v1: evaluation mean return (20 episodes)")
    args = p.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    means = {}
    for i, spec in enumerate(args.files):
        path, _, label = spec.partition("=")
        rows = json.loads(Path(path).read_text())["seeds"]
        if not all("curve" in r for r in rows):
            sys.exit(f"{path}: no learning curves in it (written before bench_cartpole.py recorded them)")
        label = label or Path(path).stem
        color = f"C{i}"
        for row in rows:
            steps, values = zip(*row["curve"])
            ax.plot(steps, values, color=color, alpha=0.3, linewidth=0.8)
        means[label] = mean_curve(rows)
        steps, values = zip(*means[label])
        ax.plot(steps, values, color=color, linewidth=2.2, label=f"{label} (mean of {len(rows)} seeds)")
    ax.axhline(475, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean return")
    ax.set_title(args.title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    emit({"benchmark": "plot_curves", "png": args.out, "mean_curves": means}, None)


if __name__ == "__main__":
    main()
