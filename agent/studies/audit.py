"""The search-amplification audit: how much of the agent's competence comes from the search?

Three policies, all run through `agent.evaluation.evaluate` (same episodes, seeds and protocol):

    prior   argmax of the learned policy prior at the real observation; no lookahead at all
    greedy  one step of lookahead on the learned model under the agent's objective:
            argmax_a  edge_reward(s, a) + discount * leaf_value(s')   (r(s,a) + gamma v(s') by default;
            terminal_value(s') where the model predicts s' terminal, as the search does)
    search  the agent itself: the full tree search under its objective

    search_amplification = (R_search - R_prior)  / max(|R_prior|, 1)
    greedy_amplification = (R_search - R_greedy) / max(|R_greedy|, 1)

where R is the mean return over the same evaluation episodes (same seeds, same protocol). The
first is the search's gain over the policy network alone, as a fraction of what the network earns
alone; the second is what the deep search adds over one step of lookahead on the learned value.
The denominator is floored at 1 (one unit of return) so that a prior earning about nothing does
not blow the ratio up; returns are in the environment's own units, so compare amplifications
within one environment. 0: the network alone plays as well as the search; 1: the search doubles
the network's return; negative: the search does worse than its own prior.

Amplification under 0.1 prints a warning. It means the policy network alone already plays about as
well as the search: the competence lives in the networks, which may be doing the optimizing
themselves (a learned optimizer, pursuing whatever objective training instilled). Then swapping
the search's objective changes little, and the search's objective is not a faithful account of
what the agent pursues. A prior that already reaches the environment's reward threshold can also
hide the search's share under a ceiling: audit a harder setting too.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from agent.evaluation import EvalResult, evaluate
from common.files import atomic_write_text
from nets.budget import format_capacity_report
from planners.search import leaf_values

WARN_BELOW = 0.1  # amplification under this triggers the warning
DEFINITION = ("search_amplification = (R_search - R_prior) / max(|R_prior|, 1); greedy_amplification = "
              "(R_search - R_greedy) / max(|R_greedy|, 1); R = mean return over the same evaluation episodes")


def amplification(r_search: float, r_base: float) -> float:
    """(r_search - r_base) / max(|r_base|, 1): the search's gain over `r_base`, relative to it."""
    return float((r_search - r_base) / max(abs(r_base), 1.0))


def prior_policy(agent) -> Callable[[np.ndarray], np.ndarray]:
    """Argmax of the learned policy prior: what the networks do with no search at all."""
    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return agent.model.initial_inference(obs).policy_logits.argmax(dim=-1).cpu().numpy()
    return act


def greedy_policy(agent) -> Callable[[np.ndarray], np.ndarray]:
    """argmax_a edge_reward + discount * leaf value (the search's: planners.search.leaf_values)
    after one model step per action (one batch)."""
    model, objective = agent.model, agent.objective

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            root = model.initial_inference(obs)
            batch, actions = root.policy_logits.shape
            # Every (state, action) pair in one recurrent_inference call: rows b*A + a.
            latent = root.latent.repeat_interleave(actions, dim=0)
            action = torch.arange(actions, device=latent.device).repeat(batch)
            kwargs = {}
            if root.reward_state is not None:
                kwargs["reward_state"] = root.reward_state.repeat_interleave(actions, dim=0)
            child = model.recurrent_inference(latent, action, **kwargs)
            objective.observe(np.repeat(obs, actions, axis=0))  # row b*A + a belongs to root b
            q = (objective.edge_reward(model, latent, action, child)
                 + objective.discount * leaf_values(objective, model, child))
            return q.reshape(batch, actions).argmax(dim=-1).cpu().numpy()
    return act


def search_policy(agent) -> Callable[[np.ndarray], np.ndarray]:
    return lambda obs: np.asarray(agent.predict(obs, deterministic=True)[0])


def run_audit(agent, env_id: Optional[str] = None, seed: Optional[int] = None, episodes: int = 20, *,
              env_kwargs: Optional[dict] = None, wrappers: Optional[Sequence[str]] = None,
              out: Optional[str | Path] = None) -> dict:
    """Evaluate the three policies on identical episodes and report the amplification (a dict).

    env_id and seed default to the agent's own; `wrappers` to the agent's own, applied as in training
    (agent/cli/env_flags.py resolves another environment with the same spaces).
    `out`: also write the report as JSON (see write_audit: a .json path, or a run directory).
    Keys: returns (prior / greedy / search: mean, std, returns), search_amplification,
    greedy_amplification, definition, warning (None or a sentence), capacity, capacity_report,
    objective, prior_setting, num_simulations, env_id, seed, episodes.
    """
    env_id = agent.env_id if env_id is None else env_id
    seed = agent.seed if seed is None else int(seed)
    wrappers = list(agent.wrappers if wrappers is None else wrappers)
    runs = {name: evaluate(policy(agent), env_id, seed, episodes, env_kwargs=env_kwargs,
                           wrappers=wrappers)
            for name, policy in (("prior", prior_policy), ("greedy", greedy_policy), ("search", search_policy))}
    r = {name: res.mean_return for name, res in runs.items()}
    amp = amplification(r["search"], r["prior"])
    capacity = agent.model.capacity_report()
    report = {
        "env_id": env_id, "env_kwargs": dict(env_kwargs or {}), "wrappers": wrappers,
        "seed": int(seed), "episodes": int(episodes),
        "objective": agent.objective.describe(),
        "prior_setting": agent.config.search.prior,
        "num_simulations": agent.config.search.num_simulations,
        "returns": {name: _summary(res) for name, res in runs.items()},
        "search_amplification": amp,
        "greedy_amplification": amplification(r["search"], r["greedy"]),
        "definition": DEFINITION,
        "warning": _warning(amp, r, env_id),
        "capacity": [{"network": c.network, "parameters": c.parameters, "depth": c.depth,
                      "stateful": c.stateful} for c in capacity],
        "capacity_report": format_capacity_report(capacity),
    }
    if out is not None:
        report["written_to"] = str(write_audit(report, out))
    return report


def _summary(res: EvalResult) -> dict:
    return {"mean": res.mean_return, "std": res.std_return, "returns": [float(x) for x in res.returns]}


def _warning(amp: float, r: dict, env_id: str) -> Optional[str]:
    if amp >= WARN_BELOW:
        return None
    text = (f"search amplification {amp:.3f} < {WARN_BELOW}: the policy network alone (mean return "
            f"{r['prior']:.2f}) plays about as well as the search ({r['search']:.2f}), so the networks may be "
            f"doing the optimizing themselves. Their objective is whatever training instilled, not the one the "
            f"search shows, and swapping the search's objective may change little.")
    threshold = _reward_threshold(env_id)
    if threshold is not None and r["prior"] >= threshold:
        text += (f" Here the prior alone already reaches {env_id}'s reward threshold ({threshold:g}), so "
                 f"a ceiling may hide the search's share: audit a harder setting too.")
    return text


def _reward_threshold(env_id: str) -> Optional[float]:
    import gymnasium as gym
    spec = gym.registry.get(env_id)
    return None if spec is None or spec.reward_threshold is None else float(spec.reward_threshold)


def format_audit(report: dict) -> str:
    rows = [f"audit of {report['env_id']} (seed {report['seed']}, {report['episodes']} episodes)",
            f"objective: {report['objective']}",
            f"search: {report['num_simulations']} simulations, prior {report['prior_setting']}", ""]
    labels = {"prior": "(a) policy prior argmax, no search", "greedy": "(b) one-step greedy on the value",
              "search": "(c) full search"}
    for name, label in labels.items():
        ret = report["returns"][name]
        rows.append(f"  {label:<38} mean return {ret['mean']:10.2f}  (std {ret['std']:.2f})")
    rows += ["", f"search amplification: {report['search_amplification']:+.3f}   ({report['definition']})",
             f"search over one-step greedy: {report['greedy_amplification']:+.3f}"]
    if report["warning"]:
        rows += ["", "WARNING: " + report["warning"]]
    return "\n".join(rows + ["", report["capacity_report"]])


def write_audit(report: dict, where: str | Path) -> Path:
    """Write the report as JSON: to `where` itself when it ends in .json, else audit.json in the run
    directory `where` names (a run directory, or a checkpoint inside one) - where compare reads it."""
    where = Path(where)
    if where.suffix == ".json":
        path = where
    else:
        path = (where if where.is_dir() else where.parent) / "audit.json"
    return atomic_write_text(path, json.dumps(report, indent=2))


TRAINING_AUDIT_FILE = "audit_train.json"


def training_audit(agent, episodes: int, run_dir: Path, logger, write: Callable[[str], None] = print) -> dict:
    """The audit a training run asks for at its end: printed in one line, logged under audit/*
    against the run's last step, and written to RUN_DIR/audit_train.json."""
    report = run_audit(agent, episodes=episodes, out=Path(run_dir) / TRAINING_AUDIT_FILE)
    r = report["returns"]
    write(f"audit ({episodes} episodes) | return prior {r['prior']['mean']:.1f}, one-step greedy "
          f"{r['greedy']['mean']:.1f}, search {r['search']['mean']:.1f} | search amplification "
          f"{report['search_amplification']:+.3f}, over greedy {report['greedy_amplification']:+.3f}"
          + (f"\nWARNING: {report['warning']}" if report["warning"] else ""))
    for key, value in {"audit/return_prior": r["prior"]["mean"], "audit/return_greedy": r["greedy"]["mean"],
                       "audit/return_search": r["search"]["mean"],
                       "audit/search_amplification": report["search_amplification"],
                       "audit/greedy_amplification": report["greedy_amplification"]}.items():
        logger.record(key, value)
    logger.dump(agent.num_timesteps)
    return report
