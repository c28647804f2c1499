#!/usr/bin/env python
"""Why a CartPole-v1 run stalls below 475: how its greedy episodes end, and whether searching more helps.

    python benchmarks/bench_cartpole_stall.py --seed 17 --stop-at 8000 [--steps 20000]
        [--sims 10,50,200,800] [--episodes 20] [--set KEY=VALUE] [--out FILE]

Trains the preset on one seed up to --stop-at environment steps (its schedules planned for --steps,
as bench_cartpole.py's --give-up-at), then plays the evaluation protocol's episodes (the same start
seeds as agent/evaluation.py) greedily and records, per episode, its length and how it ended:
`cart` (|x| > 2.4, the cart left the track), `pole` (the angle limit) or `time` (truncated at 500).
Along the first episode it records the value head's prediction beside the discounted number of
steps the episode actually had left, which is what that value estimates under the agent's own
policy. Then it plays the first 10 episodes again at each of --sims simulations: if more search
does not lengthen them, the stall is in what the networks predict, not in the search budget.
The last line is JSON. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)

X_LIMIT = 2.4  # CartPole-v1's x_threshold


def play(agent, seed: int, episodes: int):
    """Greedy episodes from the evaluation protocol's starts: lengths, endings, observations of the first."""
    import gymnasium as gym

    from agent.evaluation import eval_seed

    env_list = [gym.make("CartPole-v1") for _ in range(episodes)]
    obs = np.stack([e.reset(seed=eval_seed(seed) + i)[0] for i, e in enumerate(env_list)])
    lengths, endings, first = np.zeros(episodes, np.int64), [""] * episodes, [obs[0].copy()]
    while not all(endings):
        actions, _ = agent.predict(obs, deterministic=True)
        for i, env in enumerate(env_list):
            if endings[i]:
                continue
            obs[i], _, terminated, truncated, _ = env.step(int(actions[i]))
            lengths[i] += 1
            if i == 0 and not (terminated or truncated):
                first.append(obs[0].copy())
            if terminated or truncated:
                endings[i] = "cart" if abs(obs[i][0]) > X_LIMIT else "pole" if terminated else "time"
    return lengths, endings, np.stack(first)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--stop-at", type=int, required=True, help="environment steps trained before the diagnosis")
    p.add_argument("--steps", type=int, default=20_000, help="the run length its schedules are planned for")
    p.add_argument("--sims", default="10,50,200,800", help="simulation counts the first 10 episodes are replayed at")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override; repeatable")
    p.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    args = p.parse_args()
    if args.stop_at > args.steps:
        p.error(f"--stop-at ({args.stop_at}) must be <= --steps ({args.steps})")

    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from agent.algorithms import make_agent
    from agent.config import resolve_config

    torch.set_num_threads(args.threads)
    agent = make_agent("ez", "CartPole-v1", config=resolve_config("CartPole-v1", sets=args.set),
                       seed=args.seed, device="cpu")

    class StopAt(BaseCallback):
        def _on_step(self) -> bool:
            return self.num_timesteps < args.stop_at

    agent.learn(args.steps, progress_bar=False, callback=StopAt())
    lengths, endings, first = play(agent, args.seed, args.episodes)
    with torch.no_grad():
        value = agent.model.initial_inference(torch.as_tensor(first, dtype=torch.float32)).value.cpu().numpy()
    left = len(first) - np.arange(len(first))  # steps the first episode had left at each of its states
    gamma = agent.config.discount
    along = [{"t": int(t), "obs": [round(float(v), 3) for v in first[t]], "value": round(float(value[t]), 1),
              "discounted_steps_left": round(float((1 - gamma ** left[t]) / (1 - gamma)), 1)}
             for t in sorted({*range(0, len(first), max(1, len(first) // 8)), len(first) - 1})]
    by_sims = {}
    for sims in [int(s) for s in args.sims.split(",")]:
        agent.config.search.num_simulations = sims
        replayed, _, _ = play(agent, args.seed, min(10, args.episodes))
        by_sims[str(sims)] = float(replayed.mean())
        print(f"{sims} simulations: mean length {replayed.mean():.1f} over {len(replayed)} episodes", flush=True)
    emit({"benchmark": "cartpole_stall", "seed": args.seed, "env_steps": agent.num_timesteps,
          "mean_length": float(lengths.mean()), "lengths": lengths.tolist(), "endings": endings,
          "ended_by": {k: endings.count(k) for k in ("cart", "pole", "time")},
          "first_episode": along, "mean_length_first10_by_sims": by_sims}, args.out)


if __name__ == "__main__":
    main()
