"""Speed of the batched tree search (issue 7): B in {1, 16, 256}, 50 simulations, 4 actions,
32-dim latent, one torch thread.

(a) constant model (returns the same precomputed outputs every call): the search's own time per
    env-simulation, and the pUCT Numba kernels alone (select + expand/backup on a fixed host
    array, no torch at all) per env-simulation: the bookkeeping. (With --algorithm gumbel the
    search uses kernels.select_gumbel; the "kernels alone" figure stays pUCT's.)
(b) small torch MLP model (hidden 64): time per search, simulations per second (B * 50 / time),
    the 50 `recurrent_inference` calls alone at that B, and the ratio search / model alone.

Numba is warmed up first; every figure is the median of `--repeats` runs. Last line: JSON.

    python benchmarks/bench_search.py [--repeats 15] [--batch-sizes 1,16,256] [--clock wall|cpu] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nets.output import ModelOutput  # noqa: E402
from planners import kernels  # noqa: E402
from planners.config import SearchConfig  # noqa: E402
from planners.objectives import Learned  # noqa: E402
from planners.policies import plan  # noqa: E402
from planners.tree import Tree  # noqa: E402
from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)

SIMS, A, LATENT, HIDDEN, OBS = 50, 4, 32, 64, 8


class ConstantModel:
    """The same outputs every call: what is left is the search's own work."""

    def __init__(self, B: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.out = ModelOutput(latent=torch.randn(B, LATENT, generator=g),
                               reward=torch.randn(B, generator=g),
                               value=torch.randn(B, generator=g),
                               policy_logits=torch.randn(B, A, generator=g))

    def initial_inference(self, obs):
        return self.out

    def recurrent_inference(self, latent, action):
        return self.out


class MLPModel(nn.Module):
    """A small MuZero-shaped MLP: representation, dynamics (latent + one-hot action), one head for
    reward, value and policy logits; hidden width 64, scalar reward and value."""

    def __init__(self):
        super().__init__()
        self.represent = nn.Sequential(nn.Linear(OBS, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, LATENT))
        self.dynamics = nn.Sequential(nn.Linear(LATENT + A, HIDDEN), nn.ReLU(),
                                      nn.Linear(HIDDEN, LATENT))
        self.heads = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 + A))
        self.eye = torch.eye(A)

    def _predict(self, latent, reward):
        h = self.heads(latent)
        return ModelOutput(latent=latent, reward=h[:, 0] if reward is None else reward,
                           value=h[:, 1], policy_logits=h[:, 2:])

    def initial_inference(self, obs):
        latent = self.represent(torch.as_tensor(obs, dtype=torch.float32))
        return self._predict(latent, torch.zeros(latent.shape[0]))

    def recurrent_inference(self, latent, action):
        latent = self.dynamics(torch.cat([latent, self.eye[action]], dim=1))
        return self._predict(latent, None)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def kernels_alone(B: int, repeats: int) -> float:
    """Seconds per search of the two kernels only, with a fixed `packed` host array."""
    rng = np.random.default_rng(0)
    packed = np.concatenate([rng.normal(size=(B, 2)), rng.normal(size=(B, A))], 1)
    root_mask = np.ones((B, A), np.bool_)
    discount = 0.997

    exploration = kernels.exploration_table(SIMS + 1, 1.25, 19652.0)

    def run():
        tree = Tree.allocate(B, SIMS + 1, A, discount, SIMS + 1)
        kernels.init_roots(tree, packed, -1, -1, root_mask, 1.0)
        sel = np.zeros((kernels.SEL_ROWS, B), np.int64)
        # Called as the search calls them: compiled entry points, no per-call type dispatch.
        select = kernels.specialize(kernels.select_puct, tree, exploration, sel)
        expand_and_backup = kernels.specialize(kernels.expand_and_backup, tree, sel, packed, -1, -1, 1.0)
        for _ in range(SIMS):
            select(tree, exploration, sel)
            expand_and_backup(tree, sel, packed, -1, -1, 1.0)

    run()
    return median_time(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch-sizes", default="1,16,256")
    parser.add_argument("--algorithm", default="puct", choices=["puct", "gumbel"])
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                        help="wall: elapsed time; cpu: this process's CPU time, which leaves out the "
                             "time spent waiting for a core on a loaded machine")
    parser.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = SearchConfig(num_simulations=SIMS, algorithm=args.algorithm)
    objective = Learned()
    mlp = MLPModel().eval()
    results = {}
    print(f"search: {SIMS} simulations, {A} actions, latent {LATENT}, MLP hidden {HIDDEN}, "
          f"algorithm {args.algorithm}, torch threads {torch.get_num_threads()}, "
          f"{args.clock} clock, median of {args.repeats}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for B in [int(x) for x in args.batch_sizes.split(",")]:
        rng = np.random.default_rng(0)
        obs = torch.randn(B, OBS)

        def run(model):
            return lambda: plan(model, objective, obs, config, rng=rng, add_noise=True)

        const = ConstantModel(B)
        run(const)()  # Numba warm-up (compiles or loads the cache) and torch warm-up
        run(mlp)()
        t_kernels = kernels_alone(B, args.repeats)
        latent = mlp.initial_inference(obs).latent.detach()
        actions = torch.as_tensor(rng.integers(0, A, B))

        def model_alone():
            with torch.no_grad():
                for _ in range(SIMS):
                    mlp.recurrent_inference(latent, actions)

        model_alone()
        # Interleaved, so that a change in the machine's load hits all three alike.
        t_const, t_search, t_model = [statistics.median(ts) for ts in zip(*[
            (median_time(run(const), 1), median_time(run(mlp), 1), median_time(model_alone, 1))
            for _ in range(args.repeats)])]
        row = {
            "const_search_ms": t_const * 1e3,
            "const_us_per_env_sim": t_const / (B * SIMS) * 1e6,
            "kernels_us_per_env_sim": t_kernels / (B * SIMS) * 1e6,
            "mlp_search_ms": t_search * 1e3,
            "mlp_sims_per_s": B * SIMS / t_search,
            "model_alone_ms": t_model * 1e3,
            "ratio_search_over_model": t_search / t_model,
        }
        results[str(B)] = {k: round(v, 4) for k, v in row.items()}
        print(f"B={B:4d}  (a) constant model: {row['const_search_ms']:7.2f} ms/search = "
              f"{row['const_us_per_env_sim']:6.3f} us/env-sim; pUCT kernels alone "
              f"{row['kernels_us_per_env_sim']:6.3f} us/env-sim")
        print(f"        (b) MLP: {row['mlp_search_ms']:7.2f} ms/search, {row['mlp_sims_per_s']:9.0f} "
              f"sims/s; model alone {row['model_alone_ms']:6.2f} ms; ratio "
              f"{row['ratio_search_over_model']:.2f}x")
    emit({"bench": "search", "algorithm": args.algorithm, "clock": args.clock, "simulations": SIMS,
          "actions": A, "latent": LATENT, "hidden": HIDDEN, "results": results}, args.out)


if __name__ == "__main__":
    main()
