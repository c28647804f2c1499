"""Network figures: parameter counts, CPU forward throughput, and the MLP latent-normalization choice.

    python benchmarks/bench_nets.py            # everything (a few minutes on one CPU thread)
    python benchmarks/bench_nets.py --quick    # fewer repetitions / seeds / updates

1. Parameter counts per network (the capacity report) for the CartPole default (obs [4], 2 actions)
   and EfficientZero's Atari shape (obs [12, 96, 96] = 4 stacked RGB frames, 18 actions).
2. Forward throughput under torch.no_grad on the CPU (one thread unless --threads): samples per
   second of `initial_inference` and of `recurrent_inference` at batch sizes 1 and 256.
3. MLP latent normalization, min-max to [0, 1] (EfficientZero) against LayerNorm without affine
   parameters, on two small supervised dynamics fits with the default CartPole-sized MLPs:
   - cartpole: real CartPole-v1 transitions under a random policy; representation + dynamics +
     decoder are trained to predict the next K=5 (standardized) observations from the first one
     and the actions; the figure is the held-out MSE of those K predictions after training.
   - chain: a 5-state deterministic chain (one-hot observations, reward for reaching the right
     end), 3-step unrolls, decoder MSE + reward cross-entropy; the figure is the training loss
     averaged over the last 10 updates.
   Each is run for several seeds; the table gives mean and std over seeds.

The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nets import NetConfig, build_model, format_capacity_report  # noqa: E402
from nets.support import scalar_to_support, support_cross_entropy  # noqa: E402

SHAPES = {
    "cartpole": dict(obs_shape=(4,), num_actions=2, config=lambda: NetConfig()),
    "atari": dict(obs_shape=(12, 96, 96), num_actions=18, config=lambda: NetConfig.atari()),
}


# ----------------------------------------------------------------------------- 1. parameters


def parameter_counts() -> dict:
    result = {}
    for name, spec in SHAPES.items():
        model = build_model(spec["obs_shape"], spec["num_actions"], spec["config"](), device="cpu")
        rows = model.capacity_report()
        print(f"\n== parameters: {name} (obs {spec['obs_shape']}, {spec['num_actions']} actions, "
              f"latent {model.latent_shape})")
        print(format_capacity_report(rows))
        result[name] = {r.network: r.parameters for r in rows}
        result[name]["core_total"] = sum(r.parameters for r in rows
                                         if r.network in ("representation", "dynamics", "prediction"))
    return result


# ----------------------------------------------------------------------------- 2. throughput


def _time_call(fn, min_reps: int, min_seconds: float) -> float:
    """Median seconds per call over at least `min_reps` calls and `min_seconds` total."""
    fn()  # warm-up
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def throughput(batch_sizes, min_reps: int, min_seconds: float) -> dict:
    result = {}
    print("\n== CPU forward throughput (torch.no_grad; samples/s = B / median seconds per call)")
    print(f"{'shape':<9}{'B':>5}  {'initial ms/call':>16}  {'initial samples/s':>18}  "
          f"{'recurrent ms/call':>18}  {'recurrent samples/s':>20}")
    for name, spec in SHAPES.items():
        model = build_model(spec["obs_shape"], spec["num_actions"], spec["config"](), device="cpu").eval()
        gen = torch.Generator().manual_seed(0)
        for B in batch_sizes:
            if len(spec["obs_shape"]) == 3:
                obs = torch.randint(0, 256, (B, *spec["obs_shape"]), dtype=torch.uint8, generator=gen)
            else:
                obs = torch.randn(B, *spec["obs_shape"], generator=gen)
            actions = torch.randint(0, spec["num_actions"], (B,), generator=gen)
            with torch.no_grad():
                latent = model.initial_inference(obs).latent
                t_init = _time_call(lambda: model.initial_inference(obs), min_reps, min_seconds)
                t_rec = _time_call(lambda: model.recurrent_inference(latent, actions), min_reps, min_seconds)
            result[f"{name}_B{B}"] = dict(initial_ms=t_init * 1e3, initial_samples_per_s=B / t_init,
                                          recurrent_ms=t_rec * 1e3, recurrent_samples_per_s=B / t_rec)
            print(f"{name:<9}{B:>5}  {t_init * 1e3:>16.3f}  {B / t_init:>18,.0f}  "
                  f"{t_rec * 1e3:>18.3f}  {B / t_rec:>20,.0f}")
    return result


# ----------------------------------------------------------------------------- 3. latent norm


def cartpole_transitions(num_steps: int, seed: int):
    """Random-policy CartPole-v1 rollouts: obs [N, 4], actions [N], valid start indices for K-step
    windows that stay inside one episode."""
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    all_obs, all_act, episode = [], [], []
    ep = 0
    for _ in range(num_steps):
        a = int(rng.integers(2))
        all_obs.append(obs)
        all_act.append(a)
        episode.append(ep)
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            # The terminal observation is kept as the last of the episode, without an action.
            all_obs.append(obs)
            all_act.append(0)
            episode.append(ep)
            ep += 1
            obs, _ = env.reset()
    env.close()
    return np.asarray(all_obs, np.float32), np.asarray(all_act, np.int64), np.asarray(episode)


def fit_cartpole(norm: str, seed: int, updates: int, data, unroll: int = 5, batch: int = 128) -> float:
    obs, act, episode, train_starts, test_starts, mean, std = data
    obs_t = torch.as_tensor((obs - mean) / std)
    act_t = torch.as_tensor(act)
    torch.manual_seed(seed)
    model = build_model((4,), 2, NetConfig(use_decoder=True, latent_norm=norm), device="cpu")
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(unroll + 1)

    def unroll_loss(starts: torch.Tensor) -> torch.Tensor:
        idx = starts[:, None] + offsets  # [B, K+1]
        out = model.initial_inference(obs_t[idx[:, 0]])
        loss = torch.zeros(())
        for k in range(1, unroll + 1):
            out = model.recurrent_inference(out.latent, act_t[idx[:, k - 1]])
            loss = loss + model.reconstruction_loss(out.latent, obs_t[idx[:, k]]).mean()
        return loss / unroll

    for _ in range(updates):
        starts = train_starts[torch.randint(len(train_starts), (batch,), generator=gen)]
        loss = unroll_loss(starts)
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        return float(unroll_loss(test_starts))


def fit_chain(norm: str, seed: int, updates: int) -> float:
    n, unroll, batch = 5, 3, 64
    torch.manual_seed(seed)
    model = build_model((n,), 2, NetConfig(use_decoder=True, latent_norm=norm), device="cpu")
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    eye = torch.eye(n)

    def step(state, action):
        nxt = (state + 2 * action - 1).clamp(0, n - 1)
        return nxt, ((nxt == n - 1) & (state != n - 1)).float()

    losses = []
    for _ in range(updates):
        state = torch.randint(0, n, (batch,))
        out = model.initial_inference(eye[state])
        loss = torch.zeros(())
        for _ in range(unroll):
            action = torch.randint(0, 2, (batch,))
            state, reward = step(state, action)
            out = model.recurrent_inference(out.latent, action)
            loss = loss + model.reconstruction_loss(out.latent, eye[state]).mean() \
                + support_cross_entropy(out.reward_logits, scalar_to_support(reward, 10)).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    return float(np.mean(losses[-10:]))


def latent_norm_comparison(seeds, cartpole_updates, chain_updates) -> dict:
    obs, act, episode = cartpole_transitions(30_000, seed=0)
    unroll = 5
    n = len(obs)
    valid = np.array([i for i in range(n - unroll) if episode[i] == episode[i + unroll]])
    # Split by episode (first 80% of episodes train, the rest test) so test windows are unseen.
    cut = np.quantile(episode, 0.8)
    train_starts = torch.as_tensor(valid[episode[valid] <= cut])
    test_starts = torch.as_tensor(valid[episode[valid] > cut])
    mean, std = obs.mean(0), obs.std(0) + 1e-6
    data = (obs, act, episode, train_starts, test_starts, mean, std)
    print(f"\n== MLP latent normalization: supervised dynamics fits, seeds {list(seeds)}")
    print(f"   cartpole: {n} transitions, {len(train_starts)} train / {len(test_starts)} test windows, "
          f"{cartpole_updates} updates; figure = held-out mean MSE over K={unroll} predicted "
          f"observations (standardized)")
    print(f"   chain: {chain_updates} updates; figure = training loss, mean of the last 10 updates")
    result = {}
    print(f"{'task':<10}{'norm':<11}{'mean':>9}{'std':>9}  per seed")
    for task, fn in (("cartpole", lambda norm, s: fit_cartpole(norm, s, cartpole_updates, data)),
                     ("chain", lambda norm, s: fit_chain(norm, s, chain_updates))):
        for norm in ("minmax", "layernorm"):
            t0 = time.perf_counter()
            values = [fn(norm, s) for s in seeds]
            result[f"{task}_{norm}"] = dict(mean=float(np.mean(values)), std=float(np.std(values)),
                                            per_seed=values, seconds=time.perf_counter() - t0)
            print(f"{task:<10}{norm:<11}{np.mean(values):>9.4f}{np.std(values):>9.4f}  "
                  + " ".join(f"{v:.4f}" for v in values))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer reps, seeds and updates")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    seeds = range(3) if args.quick else range(5)
    report = dict(
        bench="nets", torch=torch.__version__, threads=args.threads, device="cpu",
        cpu=platform.processor() or platform.machine(),
        default_latent_norm=NetConfig().latent_norm,
        parameters=parameter_counts(),
        throughput=throughput((1, 256), min_reps=3 if args.quick else 10,
                              min_seconds=0.5 if args.quick else 2.0),
        latent_norm=latent_norm_comparison(seeds, cartpole_updates=500 if args.quick else 1500,
                                           chain_updates=200),
    )
    print(f"\ndefault NetConfig.latent_norm = {report['default_latent_norm']!r}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
