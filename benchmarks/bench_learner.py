#!/usr/bin/env python
"""The learner's unroll, forward and backward, eager against compiled (config.learner_backend).

    python benchmarks/bench_learner.py [--env CartPole-v1] [--warmup-steps 1000] [--repeats 50] [--out FILE]

Trains the env's preset agent for --warmup-steps (eager) so that replay holds real data, samples
one batch, and times on it the eager unroll's forward and backward and the compiled one's, in
blocks of --repeats calls, two blocks each in turn (compiled once first; the seconds that took,
with the cache it found, are recorded). Medians in milliseconds; the last line is JSON. Figures only.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--warmup-steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--out", metavar="FILE")
    args = p.parse_args()

    import numpy as np
    import torch

    from agent.config import resolve_config
    from agent.ez import EZAgent

    torch.set_num_threads(1)
    agent = EZAgent(args.env, resolve_config(args.env, sets=["learner_backend=eager"]), seed=0, device="cpu")
    agent.learn(args.warmup_steps)
    learner = agent.learner
    batch = learner.make_batch(agent.replay, agent.objective, np.random.default_rng(0), agent.num_timesteps, 0.5)

    def forward_backward(losses):
        learner.model.train()
        learner.model.zero_grad(set_to_none=True)
        with learner.model.unchecked_outputs():
            loss, _ = losses(batch)
        sum((v * batch.weights).mean() for v in loss.values()).backward()
        learner.model.eval()

    def block(fn):
        out = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            forward_backward(fn)
            out.append((time.perf_counter() - start) * 1e3)
        return out

    times = {"eager": block(learner.losses) + block(learner.losses)}
    compiled = torch.compile(learner.losses, fullgraph=True)
    start = time.perf_counter()
    forward_backward(compiled)
    compile_s = time.perf_counter() - start
    times["compiled"] = block(compiled) + block(compiled)
    times["eager_after_compiling"] = block(learner.losses)
    ms = {k: round(statistics.median(v), 3) for k, v in times.items()}
    print(f"{args.env}: forward+backward eager {ms['eager']} ms, compiled {ms['compiled']} ms "
          f"(first call, compiling: {compile_s:.1f} s)", flush=True)
    emit({"benchmark": "learner", "env": args.env, "batch_size": learner.config.batch_size,
          "unroll_steps": learner.config.unroll_steps, "forward_backward_ms": ms,
          "speedup": round(ms["eager"] / ms["compiled"], 2), "first_call_s": round(compile_s, 1),
          "repeats": args.repeats}, args.out)


if __name__ == "__main__":
    main()
