#!/usr/bin/env python
"""The learned prior after an objective swap, on glasszero/Corridor-v0 (README, "Why the policy
prior is a setting").

    python benchmarks/bench_prior_swap.py [--episodes 20] [--out FILE]

tests/fixtures/corridor_ez.pt was trained to walk to the LEFT end; its objective is swapped to a
value preferring the right end (the position, obs[:, 0]), with no retraining, and evaluated on the
shared protocol (deterministic episodes, eval seed of the fixture's seed) with each prior setting,
on the train split (every episode starts mid-corridor) and the test split (varied starts).
Reported: episodes ending at the right end (the new goal) and at the left end (the old one). The
last line is JSON. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)


def position(obs):
    """Corridor: obs[:, 0] is the position scaled to [-1, 1]; larger is further right."""
    return obs[:, 0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    args = p.parse_args()
    import torch

    from agent.evaluation import evaluate
    from agent.ez import EZAgent
    from planners.objectives import ObservationValue

    torch.set_num_threads(1)
    rows = []
    for split in ("train", "test"):
        for prior in ("learned", "uniform", "mixed(0.5)", "root-uniform", "root-mixed(0.5)"):
            agent = EZAgent.load(ROOT / "tests/fixtures/corridor_ez.pt", device="cpu")
            agent.set_objective(ObservationValue(position))
            agent.set_prior(prior)
            res = evaluate(lambda obs: agent.predict(obs)[0], agent.env_id, agent.seed, args.episodes,
                           env_kwargs={"split": split})
            row = {"split": split, "prior": prior, "episodes": args.episodes,
                   "right_end": int(sum(i["at_right_end"] for i in res.final_infos)),
                   "left_end": int(sum(i["at_left_end"] for i in res.final_infos))}
            rows.append(row)
            print(f"{split:5s}  prior {prior:10s}  new goal (right) {row['right_end']:2d}/{args.episodes}  "
                  f"old goal (left) {row['left_end']:2d}/{args.episodes}")
    emit({"benchmark": "prior_swap_corridor", "simulations": agent.config.search.num_simulations, "rows": rows},
         args.out)


if __name__ == "__main__":
    main()
