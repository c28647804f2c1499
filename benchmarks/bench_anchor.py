#!/usr/bin/env python
"""Anchored against plain predicted observations (planners/anchor.py), zero-shot, on a transfer
study's base agents: how the default `anchor=True` was chosen (on the development objectives).

    python benchmarks/bench_anchor.py --study DIR [--split dev|eval|all] [--episodes 20] [--out FILE]

For every objective of the suite (agent/studies/transfer_suite.py) in `--split` whose base agent
DIR/runs/base holds, the base agent searches under the objective's hand-written zero-shot value
with the prior after a swap (planners/config.py), once with `anchor` on and once off, on the same
evaluation episodes as `train.py transfer` (seed 0, the objective's reward wrapper). The last line
is JSON with the mean returns. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", required=True, help="a `train.py transfer --out` directory")
    p.add_argument("--split", default="dev", choices=("dev", "eval", "all"))
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--out", metavar="FILE")
    args = p.parse_args()
    import numpy as np
    import torch

    from agent.algorithms import load_agent
    from agent.evaluation import evaluate
    from agent.runner import run_dir_name
    from agent.studies.transfer_suite import SUITE
    from planners.config import PRIOR_AFTER_SWAP

    torch.set_num_threads(1)
    rows = []
    for o in SUITE:
        base = Path(args.study) / "runs" / "base" / run_dir_name("ez", o.base_env, 0)
        if args.split not in ("all", o.split) or not base.exists():
            continue
        row = {"objective": o.name, "split": o.split}
        for anchor in (True, False):
            agent = load_agent(base, device="cpu")
            agent.set_objective({**o.zero_shot, "anchor": anchor}, prior=PRIOR_AFTER_SWAP)
            res = evaluate(lambda obs: agent.predict(obs)[0], o.env, 0, args.episodes, wrappers=[o.wrapper])
            row["anchored" if anchor else "plain"] = round(float(np.mean(res.returns)), 3)
        rows.append(row)
        print(f"{o.split:4s} {o.name:28s} anchored {row['anchored']:9.3f}  plain {row['plain']:9.3f}", flush=True)
    emit({"benchmark": "anchor", "study": str(args.study), "prior": PRIOR_AFTER_SWAP, "episodes": args.episodes,
          "rows": rows}, args.out)


if __name__ == "__main__":
    main()
