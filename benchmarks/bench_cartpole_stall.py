#!/usr/bin/env python
"""Why a CartPole-v1 run stalls below 475: how its greedy episodes end, and whether searching more helps.

    python benchmarks/bench_cartpole_stall.py --seed 17 --stop-at 8000 [--steps 20000]
        [--sims 10,50,200,800] [--episodes 20] [--depths 1,6,10,14] [--set KEY=VALUE] [--out FILE]

Trains the preset on one seed up to --stop-at environment steps (its schedules planned for --steps,
as bench_cartpole.py's --give-up-at), then plays the evaluation protocol's episodes (the same start
seeds as agent/evaluation.py) greedily and records, per episode, its length and how it ended:
`cart` (|x| > 2.4, the cart left the track), `pole` (the angle limit) or `time` (truncated at 500).
Along the first episode it records the value head's prediction beside the discounted number of
steps the episode actually had left, which is what that value estimates under the agent's own
policy. Then it plays the first 10 episodes again at each of --sims simulations: if more search
does not lengthen them, the stall is in what the networks predict, not in the search budget.
Last, it plays the first 5 episodes with an exhaustive planner in place of the search: every action
sequence of --depths steps is rolled out and scored by its rewards plus the value head at its end,
and the first action of the best is taken; once through CartPole's true dynamics (the value head read
at the true states) and once through the agent's learned model. The true-dynamics planner tells
whether the value head is good enough given a long enough exact lookahead; the learned-model one,
whether the model is as good over that lookahead; a third, through the true dynamics with the value
taken as 0 (ties broken at random), is the control: what the lookahead alone achieves.
The last line is JSON. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)

def ending(env, obs, terminated: bool) -> str:
    """How a finished episode ended: the cart off the track, the pole past its limit, or time."""
    return "cart" if abs(obs[0]) > env.unwrapped.x_threshold else "pole" if terminated else "time"


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
                endings[i] = ending(env, obs[i], terminated)
    return lengths, endings, np.stack(first)


class TrueDynamics:
    """CartPole-v1's Euler step over a batch of states [N, 4], with the constants read from a
    gymnasium env, checked once against that env's own step."""

    def __init__(self, env):
        u = env.unwrapped
        self.gravity, self.total_mass, self.masspole = u.gravity, u.total_mass, u.masspole
        self.length, self.force_mag, self.tau = u.length, u.force_mag, u.tau
        self.x_limit, self.theta_limit = u.x_threshold, u.theta_threshold_radians
        rng = np.random.default_rng(0)
        for action in (0, 1):
            env.reset(seed=0)
            u.state = start = rng.uniform(-0.2, 0.2, 4)
            expected = env.step(action)[0]
            got = self.step(start[None], np.array([action]))[0][0]
            if not np.allclose(got, expected, atol=1e-6):
                raise RuntimeError(f"TrueDynamics disagrees with gymnasium's CartPole: {got} vs {expected}")

    def step(self, s: np.ndarray, a: np.ndarray):
        """Next states [N, 4] and whether each ended (cart off the track or pole past its limit)."""
        x, x_dot, theta, theta_dot = s.T
        force = np.where(a == 1, self.force_mag, -self.force_mag)
        cos, sin = np.cos(theta), np.sin(theta)
        polemass_length = self.masspole * self.length
        temp = (force + polemass_length * theta_dot ** 2 * sin) / self.total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * cos ** 2 / self.total_mass))
        x_acc = temp - polemass_length * theta_acc * cos / self.total_mass
        nxt = np.stack([x + self.tau * x_dot, x_dot + self.tau * x_acc,
                        theta + self.tau * theta_dot, theta_dot + self.tau * theta_acc], 1)
        ended = (np.abs(nxt[:, 0]) > self.x_limit) | (np.abs(nxt[:, 2]) > self.theta_limit)
        return nxt, ended


def exhaustive_action(step, root, depth: int, gamma: float, rng: np.random.Generator) -> int:
    """The first action of the best of all 2^depth action sequences from `root`, each scored by its
    discounted rewards plus gamma^depth times the value at its end (ties broken at random). The tree
    is expanded level by level: `step(states, actions, leaf) -> (next states, rewards [N], values [N]
    or None)`, whose values are read at the leaves only."""
    states, score, scale, value = root, np.zeros(1), 1.0, None
    for level in range(depth):
        actions = np.tile([0, 1], len(score))  # child 2i + a of node i takes action a
        states, reward, value = step(states[np.repeat(np.arange(len(score)), 2)], actions, level == depth - 1)
        score = np.repeat(score, 2) + scale * reward
        scale *= gamma
    score = score + scale * value
    first = np.arange(len(score)) >> (depth - 1)  # the root's child each leaf descends from
    best = np.array([score[first == a].max() for a in (0, 1)])
    return int(rng.choice(np.flatnonzero(best == best.max())))


def true_model(agent, dynamics: TrueDynamics, use_value: bool = True):
    """(step, root) over true states [N, 5]: CartPole's 4 entries and 1 while the episode is on;
    values from the agent's value head (or 0 everywhere: the control without it), 0 once the
    episode has ended."""
    import torch

    def step(states, actions, leaf):
        nxt, ended = dynamics.step(states[:, :4], actions)
        alive = states[:, 4]
        nxt = np.concatenate([nxt, (alive * ~ended)[:, None]], 1)
        if not leaf:
            return nxt, alive, None  # the ending step pays 1 too
        if not use_value:
            return nxt, alive, np.zeros(len(nxt))
        value = agent.model.initial_inference(torch.as_tensor(nxt[:, :4], dtype=torch.float32)).value
        return nxt, alive, value.cpu().numpy() * nxt[:, 4]

    return step, lambda obs: np.append(obs.astype(np.float64), 1.0)[None]


def learned_model(agent):
    """(step, root) over latents: the agent's own representation, dynamics, reward and value heads."""
    if agent.model.value_prefix_horizon is not None or agent.config.net.terminal_head:
        raise SystemExit("the learned-model planner reads per-step rewards and no predicted ends: run it "
                         "without net.value_prefix_lstm and net.terminal_head")

    def step(latents, actions, leaf):
        out = agent.model.recurrent_inference(latents, actions)  # the value comes with it
        return out.latent, out.reward.cpu().numpy(), out.value.cpu().numpy()

    return step, lambda obs: agent.model.initial_inference(obs[None]).latent


def play_planned(agent, seed: int, episodes: int, depth: int, model):
    """Episodes from the evaluation protocol's starts, acted by exhaustive_action over `model`'s
    (step, root): lengths, endings."""
    import gymnasium as gym
    import torch

    from agent.evaluation import eval_seed

    step, root = model
    rng = np.random.default_rng(seed)
    lengths, endings = [], []
    for i in range(episodes):
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=eval_seed(seed) + i)
        terminated = truncated = False
        length = 0
        while not (terminated or truncated):
            with torch.no_grad():
                action = exhaustive_action(step, root(obs), depth, agent.config.discount, rng)
            obs, _, terminated, truncated, _ = env.step(action)
            length += 1
        lengths.append(length)
        endings.append(ending(env, obs, terminated))
    return lengths, endings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--stop-at", type=int, required=True, help="environment steps trained before the diagnosis")
    p.add_argument("--steps", type=int, default=20_000, help="the run length its schedules are planned for")
    p.add_argument("--sims", default="10,50,200,800", help="simulation counts the first 10 episodes are replayed at")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--depths", default="1,6,10,14",
                   help="lookahead depths of the exhaustive planners (2^depth sequences each step; '' skips them)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override; repeatable")
    p.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    args = p.parse_args()
    if any(int(d) < 1 for d in args.depths.split(",") if d):
        p.error(f"--depths must be >= 1 each, got {args.depths!r}")
    if args.stop_at > args.steps:
        p.error(f"--stop-at ({args.stop_at}) must be <= --steps ({args.steps})")

    import gymnasium as gym
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
    dynamics = TrueDynamics(gym.make("CartPole-v1"))
    planners = {"true_dynamics": true_model(agent, dynamics), "learned_model": learned_model(agent),
                "true_dynamics_no_value": true_model(agent, dynamics, use_value=False)}
    by_depth = {name: {} for name in planners}
    for depth in [int(d) for d in args.depths.split(",") if d]:
        for name, model in planners.items():
            lengths_d, endings_d = play_planned(agent, args.seed, 5, depth, model)
            by_depth[name][str(depth)] = {"lengths": lengths_d, "endings": endings_d}
            print(f"{name}, depth {depth}: lengths {lengths_d}, endings {endings_d}", flush=True)
    emit({"benchmark": "cartpole_stall", "seed": args.seed, "env_steps": agent.num_timesteps,
          "mean_length": float(lengths.mean()), "lengths": lengths.tolist(), "endings": endings,
          "ended_by": {k: endings.count(k) for k in ("cart", "pole", "time")},
          "first_episode": along, "mean_length_first10_by_sims": by_sims,
          "exhaustive_first5_by_depth": by_depth}, args.out)


if __name__ == "__main__":
    main()
