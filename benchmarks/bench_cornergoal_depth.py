#!/usr/bin/env python
"""CornerGoal's swapped objective at unlimited search depth against a 1-step horizon, with the
terminal head on (issue: a world model that can serve any objective).

    python benchmarks/bench_cornergoal_depth.py [--steps 8000] [--seeds 0,1,2] [--episodes 100] [--out FILE]

Per seed: ez trained on split="train" with the observation decoder and the terminal head on; then the
same networks under ObservedGoalDistance (uniform prior) at horizon 1 and unlimited, and under the
learned objective, each measured on both splits (true-goal success, proxy pursuit). Settings are to
be chosen on the train split; the test split is reported. The last line is JSON. Figures only.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)

ENV = "glasszero/CornerGoal-v0"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    args = p.parse_args()
    import numpy as np
    import torch

    from agent.algorithms import load_agent
    from agent.runner import train_run
    from agent.studies.misgen import measure
    from planners.objectives import ObservedGoalDistance

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as logdir:
        for seed in [int(s) for s in args.seeds.split(",")]:
            run = train_run("ez", ENV, seed, args.steps, logdir, eval_interval=args.steps, eval_episodes=20,
                            progress_bar=False, verbose=False,
                            config_overrides={"net.use_decoder": True, "net.decoder_joint": True,  # as measured
                                              "net.terminal_head": True})
            for horizon in (1, None, "learned objective"):
                agent = load_agent(run.run_dir, device="cpu")
                if horizon != "learned objective":
                    agent.set_objective(ObservedGoalDistance(horizon=horizon, discount=agent.config.discount))
                    agent.set_prior("uniform")
                for split in ("train", "test"):
                    r = measure(lambda obs, a=agent: np.asarray(a.predict(obs)[0]), "ez", ENV, seed, split,
                                args.episodes)
                    rows.append({"seed": seed, "objective": "swapped" if horizon != "learned objective" else horizon,
                                 "horizon": horizon if horizon != "learned objective" else None, "split": split,
                                 "success": r.success_rate, "proxy": r.proxy_rate})
                    print(rows[-1], flush=True)
    emit({"benchmark": "cornergoal_depth", "env": ENV, "steps": args.steps, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
