#!/usr/bin/env python
"""The Atari path on this machine's CPU (`pip install -e ".[atari]"`): what `python train.py --env
ALE/Pong-v5 --steps 2000` costs.

    python benchmarks/bench_atari.py [--env ALE/Pong-v5] [--steps 2000] [--threads 1] [--set KEY=VALUE ...]
        [--out FILE]

Trains the ez agent with the env's preset (EfficientZero's Atari 100k settings, agent/config.py)
for --steps environment steps, no evaluations, and prints: environment steps per second (whole run,
and the share of it before training starts, self-play alone), training steps, peak resident memory,
and replay memory, both as allocated for this run and per 100k stored states (a state is one agent
step: 4 emulator frames), beside what storing whole 4-frame stacks would take. Self-play episode
returns are listed when an episode finished. The last line is JSON. Figures only.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)

GB = 1024 ** 3


def replay_bytes_per_state(replay) -> int:
    """Bytes every stored state takes in the replay's arrays (capacity is allocated up front)."""
    return sum(getattr(replay, k).nbytes for k in replay._ARRAYS) // replay.capacity


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", metavar="FILE")
    args = p.parse_args()

    import numpy as np
    import torch

    from agent.config import resolve_config
    from agent.ez import EZAgent

    torch.set_num_threads(args.threads)
    config = resolve_config(args.env, sets=args.set)
    agent = EZAgent(args.env, config, seed=args.seed, device="cpu")
    start = time.time()
    warmup = min(config.learning_starts, args.steps)
    agent.learn(warmup)  # self-play only: training starts after learning_starts steps
    selfplay_s, warmup = time.time() - start, agent.num_timesteps  # whole vector steps: may pass `warmup`
    agent.learn(max(0, args.steps - warmup))
    total_s = time.time() - start
    replay = agent.replay
    per_state = replay_bytes_per_state(replay)
    frame_bytes = replay.obs[0].nbytes
    stacked_per_state = per_state + frame_bytes * (replay.frame_stack - 1)
    returns = [float(r) for r in agent._recent_returns]
    result = {
        "benchmark": "atari", "env": args.env, "env_steps": agent.num_timesteps, "seconds": round(total_s, 1),
        "env_steps_per_s": round(agent.num_timesteps / total_s, 2),
        "selfplay_env_steps_per_s": round(warmup / selfplay_s, 2) if warmup else None,
        "train_steps": agent.learner.train_steps, "peak_rss_gb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB, 2),
        "frame_stack": replay.frame_stack, "replay_capacity": replay.capacity,
        "replay_allocated_gb": round(per_state * replay.capacity / GB, 3),
        "replay_gb_per_100k_states": round(per_state * 100_000 / GB, 3),
        "replay_gb_per_100k_states_whole_stacks": round(stacked_per_state * 100_000 / GB, 3),
        "selfplay_episode_returns": returns, "threads": args.threads,
        "settings": args.set, "compute_dtype": str(agent.model.compute_dtype or torch.float32).replace("torch.", ""),
        "network_parameters": agent.num_parameters,
        "model": agent.config.net.family, "simulations": agent.config.search.num_simulations,
        "torch": torch.__version__, "numpy": np.__version__,
    }
    print(f"{args.env}: {agent.num_timesteps} steps in {total_s:.0f} s ({result['env_steps_per_s']} steps/s; "
          f"self-play alone {result['selfplay_env_steps_per_s']}), {result['train_steps']} training steps, peak RSS "
          f"{result['peak_rss_gb']} GB; replay {result['replay_gb_per_100k_states']} GB per 100k states "
          f"({result['replay_gb_per_100k_states_whole_stacks']} GB with whole stacks)")
    emit(result, args.out)


if __name__ == "__main__":
    main()
