"""glasszero's search against google-deepmind/mctx, in the same run: the same network (a
`nets.Model` of the MLP family, latent 32, hidden 64: layer-normalized latents, categorical
reward and value decoded from their supports; its torch weights copied into jax arrays and the
forward written again in jax), batch, 50 simulations and 4 actions, for pUCT (`puct_policy` vs
`mctx.muzero_policy`) and Gumbel (`gumbel_policy` vs `mctx.gumbel_muzero_policy`).

glasszero is timed twice: with `search.inference="auto"` (the default: the MLP's step compiled
into the Numba search loop, planners/fused.py), which `speedup` compares with mctx, and with
`"torch"` (a torch call per simulation), reported beside it as `glasszero_torch_ms`.

Both sides start from observations: glasszero's time includes its `initial_inference`, mctx's
jitted function runs the representation and head on the observations, then the policy. mctx is
compiled once first (compile time left out) and timed up to `jax.block_until_ready` on its
output. One torch thread; XLA is asked for one CPU thread (XLA_FLAGS, set before jax is imported).
Wall clock; both are warmed up, then called alternately `--repeats` times and the medians kept.
Last line: JSON (speedup = mctx ms / glasszero ms).

    pip install -e ".[bench]"
    python benchmarks/bench_search_vs_mctx.py [--repeats 15] [--batch-sizes 1,16,256] [--out FILE]
"""
from __future__ import annotations

import os

# Before jax is imported: one CPU thread for XLA, no preallocation games on the CPU.
XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + XLA_FLAGS).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_search import A, HIDDEN, LATENT, OBS, SIMS  # noqa: E402
from result_line import emit  # noqa: E402
from nets.config import NetConfig  # noqa: E402
from nets.model import Model, build_model  # noqa: E402
from nets.support import TRANSFORM_EPS  # noqa: E402
from planners.config import SearchConfig  # noqa: E402
from planners.objectives import Learned  # noqa: E402
from planners.policies import gumbel_policy, puct_policy  # noqa: E402
from planners.search import INFERENCE  # noqa: E402

try:
    import jax  # noqa: E402
    import jax.numpy as jnp  # noqa: E402
    import mctx  # noqa: E402
except ImportError as e:  # pragma: no cover - depends on the optional extra
    sys.exit(f"bench_search_vs_mctx.py needs jax and mctx ({e}); install them with:\n"
             f'    pip install -e ".[bench]"')

DISCOUNT = 0.997
POLICIES = ("puct", "gumbel")


def jax_params(model: Model) -> dict:
    """The model's weights as jax arrays: {network: [(W [in, out], b [out]) per Linear]}."""
    def layers(seq):
        return [(jnp.asarray(m.weight.detach().numpy().T), jnp.asarray(m.bias.detach().numpy()))
                for m in seq if isinstance(m, torch.nn.Linear)]
    return {"represent": layers(model.representation.net), "dynamics": layers(model.dynamics.net),
            "reward": layers(model.dynamics.reward.out), "policy": layers(model.prediction.policy),
            "value": layers(model.prediction.value.heads[0])}


def mlp(layers, x):
    """nets.mlp.mlp: Linear, ReLU, ..., Linear."""
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = jax.nn.relu(x)
    return x


def layer_norm(x):
    """nets.mlp.LatentNorm("layernorm"): no affine parameters, torch's eps."""
    mean = x.mean(axis=1, keepdims=True)
    return (x - mean) / jnp.sqrt(((x - mean) ** 2).mean(axis=1, keepdims=True) + 1e-5)


def decode(logits):
    """nets.support.support_to_scalar: softmax expectation over -S..S, then h^-1."""
    S = (logits.shape[-1] - 1) // 2
    y = jax.nn.softmax(logits, axis=-1) @ jnp.arange(-S, S + 1, dtype=logits.dtype)
    eps = TRANSFORM_EPS
    root = (jnp.sqrt(1 + 4 * eps * (jnp.abs(y) + 1 + eps)) - 1) / (2 * eps)
    return jnp.sign(y) * (root * root - 1)


def root_fn(params, obs):
    latent = layer_norm(mlp(params["represent"], obs))
    return mctx.RootFnOutput(prior_logits=mlp(params["policy"], latent),
                             value=decode(mlp(params["value"], latent)), embedding=latent)


def recurrent_fn(params, rng_key, action, latent):
    """nets.Model.recurrent_inference: dynamics on latent + one-hot action, reward and prediction
    heads on the new latent. Discount 0.997 everywhere (no terminal head)."""
    latent = layer_norm(mlp(params["dynamics"], jnp.concatenate([latent, jax.nn.one_hot(action, A)], axis=1)))
    reward = decode(mlp(params["reward"], latent))
    out = mctx.RecurrentFnOutput(reward=reward, discount=jnp.full_like(reward, DISCOUNT),
                                 prior_logits=mlp(params["policy"], latent),
                                 value=decode(mlp(params["value"], latent)))
    return out, latent


def make_mctx(policy: str):
    """One jitted function: observations -> root inference -> the mctx policy (50 simulations)."""
    if policy == "puct":
        def fn(params, key, obs):
            return mctx.muzero_policy(params, key, root_fn(params, obs), recurrent_fn,
                                      num_simulations=SIMS, dirichlet_fraction=0.25, dirichlet_alpha=0.3,
                                      pb_c_init=1.25, pb_c_base=19652.0)
    else:
        def fn(params, key, obs):
            return mctx.gumbel_muzero_policy(params, key, root_fn(params, obs), recurrent_fn,
                                             num_simulations=SIMS, max_num_considered_actions=16)
    return jax.jit(fn)


def mctx_max_depth(tree) -> np.ndarray:
    """Deepest node of each mctx tree, [B] (nodes are numbered in the order they were added)."""
    parents = np.asarray(tree.parents)
    depth = np.zeros(parents.shape, np.int64)
    rows = np.arange(parents.shape[0])
    for n in range(1, parents.shape[1]):
        p = parents[:, n]
        depth[:, n] = np.where(p >= 0, depth[rows, np.maximum(p, 0)] + 1, 0)
    return depth.max(axis=1)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch-sizes", default="1,16,256")
    parser.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model((OBS,), A, NetConfig(latent_dim=LATENT, hidden=(HIDDEN,), use_decoder=False),
                        device="cpu").eval()
    params = jax_params(model)
    objective = Learned(DISCOUNT)
    configs = {inference: SearchConfig(num_simulations=SIMS, inference=inference) for inference in INFERENCE}
    config = configs["auto"]
    gz_policies = {"puct": puct_policy, "gumbel": gumbel_policy}
    mx_policies = {p: make_mctx(p) for p in POLICIES}
    load = os.getloadavg()
    print(f"glasszero vs mctx {mctx.__version__} (jax {jax.__version__}, {jax.devices()[0].platform}): "
          f"{SIMS} simulations, {A} actions, MLP obs {OBS} / latent {LATENT} / hidden {HIDDEN}, "
          f"discount {DISCOUNT}, wall clock, median of {args.repeats} interleaved; torch threads "
          f"{torch.get_num_threads()}; XLA_FLAGS={os.environ['XLA_FLAGS']!r}; load average "
          f"{load[0]:.2f} on {os.cpu_count()} cores")

    # Fairness: the two MLPs agree, and both searches give root values of the same size (B=16).
    obs = torch.randn(16, OBS)
    with torch.no_grad():
        t_root = model.initial_inference(obs)
        t_step = model.recurrent_inference(t_root.latent, torch.arange(16) % A)
    j_root = root_fn(params, jnp.asarray(obs.numpy()))
    j_step, _ = recurrent_fn(params, None, jnp.arange(16) % A, j_root.embedding)
    mlp_diff = max(float(np.abs(np.asarray(j_root.value) - t_root.value.numpy()).max()),
                   float(np.abs(np.asarray(j_root.prior_logits) - t_root.policy_logits.numpy()).max()),
                   float(np.abs(np.asarray(j_step.reward) - t_step.reward.numpy()).max()),
                   float(np.abs(np.asarray(j_step.value) - t_step.value.numpy()).max()))
    print(f"check: torch vs jax MLP, max |difference| of root value/logits and one step's reward/value "
          f"{mlp_diff:.2e}")
    sanity = {}
    for p in POLICIES:
        gz = gz_policies[p](model, objective, obs, config, rng=np.random.default_rng(0), add_noise=True)
        mx = mx_policies[p](params, jax.random.PRNGKey(0), jnp.asarray(obs.numpy()))
        mx_root = np.asarray(mx.search_tree.node_values[:, 0])
        mx_visits = np.asarray(mx.search_tree.children_visits[:, 0]).sum(1)
        diff = float(np.abs(gz.root_value - mx_root).mean())
        gz_depth, mx_depth = float(gz.max_depth.mean()), float(mctx_max_depth(mx.search_tree).mean())
        sanity[p] = {"mean_abs_root_value_diff": round(diff, 4),
                     "glasszero_mean_max_depth": gz_depth, "mctx_mean_max_depth": mx_depth,
                     "glasszero_mean_root_value": round(float(gz.root_value.mean()), 4),
                     "mctx_mean_root_value": round(float(mx_root.mean()), 4),
                     "network_mean_root_value": round(float(t_root.value.mean()), 4)}
        print(f"check: {p:6s} B=16 root value, mean |glasszero - mctx| {diff:.4f}; means glasszero "
              f"{gz.root_value.mean():+.4f}, mctx {mx_root.mean():+.4f} (network's own {t_root.value.mean():+.4f}); "
              f"root visits per tree glasszero {int(gz.visit_counts.sum(1)[0])}, mctx {int(mx_visits[0])}; "
              f"mean deepest node glasszero {gz_depth:.1f}, mctx {mx_depth:.1f}")

    speedup, gz_ms, gz_torch_ms, mx_ms, cpu_over_wall = ({p: {} for p in POLICIES} for _ in range(5))
    rows = []
    for B in [int(x) for x in args.batch_sizes.split(",")]:
        obs = torch.randn(B, OBS)
        jobs = jnp.asarray(obs.numpy())
        for p in POLICIES:
            rng = np.random.default_rng(0)
            keys = iter(jax.random.split(jax.random.PRNGKey(B), 2 * args.repeats + 4))

            def run_gz(inference="auto"):
                return gz_policies[p](model, objective, obs, configs[inference], rng=rng, add_noise=True)

            def run_gz_torch():
                return run_gz("torch")

            def run_mx():
                return jax.block_until_ready(mx_policies[p](params, next(keys), jobs))

            t0 = time.perf_counter()
            run_mx()  # compiles (left out of the timing)
            compile_s = time.perf_counter() - t0
            run_gz(), run_gz(), run_gz_torch(), run_mx()  # warm-up: Numba, torch, jax dispatch
            triples = [(timed(run_gz), timed(run_mx), timed(run_gz_torch)) for _ in range(args.repeats)]
            pairs = [t[:2] for t in triples]
            g_wall = statistics.median(g[0] for g, _ in pairs)
            m_wall = statistics.median(m[0] for _, m in pairs)
            t_wall = statistics.median(t[2][0] for t in triples)
            gz_ms[p][str(B)] = round(g_wall * 1e3, 3)
            gz_torch_ms[p][str(B)] = round(t_wall * 1e3, 3)
            mx_ms[p][str(B)] = round(m_wall * 1e3, 3)
            speedup[p][str(B)] = round(m_wall / g_wall, 3)
            cpu_over_wall[p][str(B)] = {
                "glasszero": round(sum(g[1] for g, _ in pairs) / sum(g[0] for g, _ in pairs), 2),
                "mctx": round(sum(m[1] for _, m in pairs) / sum(m[0] for _, m in pairs), 2)}
            rows.append((p, B, g_wall * 1e3, t_wall * 1e3, m_wall * 1e3, m_wall / g_wall, compile_s,
                         cpu_over_wall[p][str(B)]))

    print(f"\n{'policy':7s} {'B':>4s} {'glasszero ms':>13s} {'(torch path)':>13s} {'mctx ms':>9s} {'speedup':>8s} "
          f"{'mctx 1st call s':>15s}  cpu/wall (gz, mctx)")
    for p, B, g, t, m, s, c, cw in rows:
        print(f"{p:7s} {B:4d} {g:13.2f} {t:13.2f} {m:9.2f} {s:7.2f}x {c:15.1f}  {cw['glasszero']:.2f}, {cw['mctx']:.2f}")
    emit({"benchmark": "search_vs_mctx", "speedup": speedup, "glasszero_ms": gz_ms,
          "glasszero_torch_ms": gz_torch_ms, "mctx_ms": mx_ms, "network": "nets.Model, MLP family", "simulations": SIMS, "actions": A, "latent": LATENT,
          "hidden": HIDDEN, "repeats": args.repeats, "clock": "wall",
          "cpu_over_wall": cpu_over_wall, "sanity_b16": sanity,
          "torch_vs_jax_mlp_max_abs_diff": mlp_diff, "xla_flags": os.environ["XLA_FLAGS"],
          "torch_threads": torch.get_num_threads(), "jax": jax.__version__,
          "mctx": mctx.__version__, "torch": torch.__version__,
          "load_average": [round(x, 2) for x in load],
          "load_average_end": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count()}, args.out)


if __name__ == "__main__":
    main()
