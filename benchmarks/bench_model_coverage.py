#!/usr/bin/env python
"""How well a trained world model predicts what OTHER policies would see: the k-step observation
prediction error on held-out trajectories of a random policy, of each trained agent itself, of
the first model's networks searching for other goals (swapped objectives), and of other trained
agents (--policy: e.g. PPO trained on another goal). Every model is scored on the same trajectories,
so two models (with and without explorers, say) compare on equal ground.

    python benchmarks/bench_model_coverage.py [--checkpoint [LABEL=]PATH ...] [--policy LABEL=RUN ...]
        [--episodes 10] [--steps 1,5,10] [--out FILE]

For every trajectory (o_0, a_0, o_1, ...) and start t: the model encodes o_t, steps its dynamics
along the real actions a_t .. a_{t+k-1}, decodes the latent and is compared with o_{t+k} (mean
squared error over the observation's entries; episodes' ends cut the unroll). A model trained only
on its own policy's states may predict well there and badly where a swapped objective takes the
agent: the gap between the rows is what coverage off the training policy has to close. The model
needs an observation decoder. The last line is JSON. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)


def cart_at(x: float) -> Callable:
    """CartPole: keep the cart near position x (obs[:, 0])."""
    def value(obs):
        return -abs(obs[:, 0] - x)
    value.__name__ = f"cart_at_{x:+g}"
    return value


def position_at(p: float) -> Callable:
    """Corridor: be near scaled position p (obs[:, 0] in [-1, 1])."""
    def value(obs):
        return -abs(obs[:, 0] - p)
    value.__name__ = f"position_at_{p:+g}"
    return value


# Other goals a person might ask of the same networks, per environment (values over observations).
GOALS: Dict[str, List[Callable]] = {
    "CartPole-v1": [cart_at(-1.0), cart_at(1.0)],
    "glasszero/Corridor-v0": [position_at(1.0), position_at(0.0)],
}


def rollouts(policy, env_id: str, episodes: int, seed: int, max_steps: int = 500
             ) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Episodes of (observations [T+1, ...], actions [T]) acting with `policy(obs) -> action`."""
    import envs
    env = envs.make(env_id, None)
    out = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        observations, actions = [obs], []
        for _ in range(max_steps):
            a = int(policy(obs))
            obs, _, term, trunc, _ = env.step(a)
            observations.append(obs)
            actions.append(a)
            if term or trunc:
                break
        out.append((np.asarray(observations, np.float32), np.asarray(actions, np.int64)))
    env.close()
    return out


def prediction_errors(model, episodes, steps: List[int]) -> Dict[str, float]:
    """Mean squared error of decode(k-step latent) against the real o_{t+k}, for each k in steps."""
    import torch
    errors = {k: [] for k in steps}
    with torch.no_grad():
        for observations, actions in episodes:
            T = len(actions)
            latent = model.initial_inference(observations[:T]).latent  # every start t at once
            for k in range(1, max(steps) + 1):
                live = T - k + 1  # starts whose k-th step is still inside the episode
                if live <= 0:
                    break
                latent = model.recurrent_inference(latent[:live], torch.as_tensor(actions[k - 1:k - 1 + live])).latent
                if k in errors:
                    pred = model.decode(latent).numpy()
                    errors[k].extend(((pred - observations[k:k + live]) ** 2).reshape(live, -1).mean(1).tolist())
    return {f"mse_{k}": float(np.mean(v)) if v else float("nan") for k, v in errors.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", metavar="[LABEL=]PATH",
                   help="a model to score (repeatable; all are scored on the same trajectories)")
    p.add_argument("--policy", action="append", default=[], metavar="LABEL=RUN",
                   help="also roll out this trained agent (any algorithm: a run directory or checkpoint), e.g. "
                        "a PPO agent trained on another goal (repeatable)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--steps", default="1,5,10")
    p.add_argument("--seed", type=int, default=2_000_003, help="episode seeds (apart from training's and evaluation's)")
    p.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    args = p.parse_args()
    import torch

    from agent.algorithms import load_agent
    from agent.ez import EZAgent
    from planners.objectives import ObservationValue

    torch.set_num_threads(1)
    steps = [int(k) for k in args.steps.split(",")]
    checkpoints = dict(_labelled(c) for c in (args.checkpoint or [str(ROOT / "tests/fixtures/cartpole_ez.pt")]))
    models = {}
    for label, path in checkpoints.items():
        agent = load_agent(path, device="cpu")
        if not isinstance(agent, EZAgent) or not agent.model.has_decoder:
            raise SystemExit(f"--checkpoint {path}: not an ez model with an observation decoder")
        models[label] = agent
    first_label, first = next(iter(models.items()))
    env_id = first.env_id
    rng = np.random.default_rng(args.seed)
    # Trajectories come from policies none of the scored models is (the random policy, other
    # trained agents), plus each model's own greedy policy and the first model's searches for
    # other goals; every model is scored on all of them.
    policies = {"random": lambda obs: rng.integers(first.num_actions)}
    for label, agent in models.items():
        policies[f"trained ({label})"] = lambda obs, a=agent: a.predict(obs)[0]
    for goal in GOALS.get(env_id, []):
        swapped = load_agent(checkpoints[first_label], device="cpu")
        swapped.set_objective(ObservationValue(goal), prior="uniform")
        policies[f"{first_label} searching for {goal.__name__}"] = lambda obs, s=swapped: s.predict(obs)[0]
    for label, path in map(_labelled, args.policy):
        other = load_agent(path, device="cpu")
        policies[label] = lambda obs, o=other: o.predict(obs, deterministic=True)[0]
    rows = []
    for name, policy in policies.items():
        episodes = rollouts(policy, env_id, args.episodes, args.seed)
        for label, agent in models.items():
            row = {"policy": name, "model": label, "transitions": int(sum(len(a) for _, a in episodes)),
                   **prediction_errors(agent.model, episodes, steps)}
            rows.append(row)
            print(f"{name:36s} {label:14s} {row['transitions']:6d} transitions   " +
                  "   ".join(f"{k}-step MSE {row[f'mse_{k}']:.4f}" for k in steps), flush=True)
    # Per model, the mean over every policy but its own: the error where a swapped objective would go
    # (policies whose episodes are all shorter than k steps have no k-step error: left out).
    off_policy = {label: {f"mse_{k}": float(np.nanmean([r[f"mse_{k}"] for r in rows if r["model"] == label
                                                       and r["policy"] != f"trained ({label})"])) for k in steps}
                  for label in models}
    for label, errors in off_policy.items():
        print(f"off its own policy, mean   {label:14s} " + "   ".join(f"{k}: {v:.4f}" for k, v in errors.items()))
    emit({"benchmark": "model_coverage", "env": env_id, "checkpoints": checkpoints, "policies": args.policy,
          "episodes": args.episodes, "off_policy_mse": off_policy, "rows": rows}, args.out)


def _labelled(text: str) -> Tuple[str, str]:
    """'LABEL=PATH' -> (LABEL, PATH); a bare PATH is its own label."""
    label, sep, path = text.partition("=")
    return (label, path) if sep else (text, text)


if __name__ == "__main__":
    main()
