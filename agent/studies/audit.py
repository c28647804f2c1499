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
what the agent pursues.

Two more measurements say something where the amplification cannot:

    sweep          the search's return against its number of simulations, 0 (= the prior alone),
                   1, 2, 5, 10, 25, 50 by default, under the agent's objective and prior setting
    uniform prior  the full search with a uniform prior (agent.set_prior('uniform'), restored
                   after): the search's competence without the learned policy steering it

A ceiling: when the prior alone already reaches the environment's reward threshold (the gym spec's
reward_threshold, or `reward_threshold=`), the search has no room to add return, so the report
says `"ceiling": true` and `"search_amplification": null` with a sentence, rather than an
amplification near 0 that would read as "the search adds nothing" (greedy_amplification likewise
when one-step greedy reaches the threshold). Read the sweep and the uniform-prior return there.

`transfer_median=` puts a transfer suite's median in the report when one is given (the suite that
measures swapped objectives computes it; the audit only carries it).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from agent.evaluation import EvalResult, evaluate
from common.files import atomic_write_text
from nets.budget import format_capacity_report
from planners.search import leaf_values, objective_view

WARN_BELOW = 0.1  # amplification under this triggers the warning
DEFAULT_SWEEP = (0, 1, 2, 5, 10, 25, 50)  # search simulations of the sweep; 0 is the policy prior alone
# The sweep of the audit after every training run and of compare's audit of each run: kept cheap
# (1 + 2 + 5 simulations per step in all; see the README's audit section).
QUICK_SWEEP = (0, 1, 2, 5)
DEFINITION = ("search_amplification = (R_search - R_prior) / max(|R_prior|, 1); greedy_amplification = "
              "(R_search - R_greedy) / max(|R_greedy|, 1); R = mean return over the same evaluation episodes")


def amplification(r_search: float, r_base: float) -> float:
    """(r_search - r_base) / max(|r_base|, 1): the search's gain over `r_base`, relative to it."""
    return float((r_search - r_base) / max(abs(r_base), 1.0))


def prior_policy(agent) -> Callable[[np.ndarray], np.ndarray]:
    """Argmax of the learned policy prior: what the networks do with no search at all, shown the
    observation the search shows them (Objective.model_view: a goal held out of the input, say)."""
    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            root = agent.model.initial_inference(agent.objective.model_view(obs))
            return root.policy_logits.argmax(dim=-1).cpu().numpy()
    return act


def greedy_policy(agent) -> Callable[[np.ndarray], np.ndarray]:
    """argmax_a edge_reward + discount * leaf value (the search's: planners.search.leaf_values)
    after one model step per action (one batch)."""
    model, objective = agent.model, agent.objective

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            root = model.initial_inference(objective.model_view(obs))
            batch, actions = root.policy_logits.shape
            # Every (state, action) pair in one recurrent_inference call: rows b*A + a.
            latent = root.latent.repeat_interleave(actions, dim=0)
            action = torch.arange(actions, device=latent.device).repeat(batch)
            kwargs = {}
            if root.reward_state is not None:
                kwargs["reward_state"] = root.reward_state.repeat_interleave(actions, dim=0)
            objective.observe(np.repeat(obs, actions, axis=0))  # row b*A + a belongs to root b
            child = objective_view(objective, model, model.recurrent_inference(latent, action, **kwargs))
            q = (objective.edge_reward(model, latent, action, child)
                 + objective.discount * leaf_values(objective, model, child))
            return q.reshape(batch, actions).argmax(dim=-1).cpu().numpy()
    return act


def search_policy(agent) -> Callable[[np.ndarray], np.ndarray]:
    return lambda obs: np.asarray(agent.predict(obs, deterministic=True)[0])


def run_audit(agent, env_id: Optional[str] = None, seed: Optional[int] = None, episodes: int = 20, *,
              env_kwargs: Optional[dict] = None, wrappers: Optional[Sequence[str]] = None,
              simulations: Optional[Sequence[int]] = DEFAULT_SWEEP, uniform_prior: bool = True,
              reward_threshold: Optional[float] = None, transfer_median: Optional[float] = None,
              out: Optional[str | Path] = None) -> dict:
    """Evaluate the prior, one-step greedy and the full search, then the sweep's simulation counts and
    the search with a uniform prior, all on identical episodes; report the amplification (a dict).

    env_id and seed default to the agent's own; `wrappers` (the env's whole list) to the agent's own,
    with its observation history (Agent.env_wrappers), applied as in training
    (agent/cli/env_flags.py resolves another environment with the same spaces).
    simulations: the sweep's simulation counts (0: the prior alone; None or empty: no sweep).
    uniform_prior: also run the full search with a uniform prior. reward_threshold: the return at
    which the prior counts as at the ceiling (default: env_id's registered reward_threshold, if any).
    transfer_median: a transfer suite's median, carried into the report when given.
    `out`: also write the report as JSON (see write_audit: a .json path, or a run directory).
    Keys: returns (prior / greedy / search: mean, std, returns), sweep (one row per simulation
    count: simulations, mean, std, returns), uniform_prior (mean, std, returns, or None),
    search_amplification and greedy_amplification (None at a ceiling), ceiling, ceiling_note,
    reward_threshold, definition, warning (None or a sentence), capacity, capacity_report,
    objective, prior_setting, num_simulations, env_id, env_kwargs, wrappers, seed, episodes, and
    transfer_median when given. The agent's search settings are as before when it returns.
    """
    sweep = check_simulations(simulations)
    env_id = agent.env_id if env_id is None else env_id
    seed = agent.seed if seed is None else int(seed)
    wrappers = agent.env_wrappers() if wrappers is None else list(wrappers)

    def run(policy) -> EvalResult:
        return evaluate(policy, env_id, seed, episodes, env_kwargs=env_kwargs, wrappers=wrappers)

    runs = {name: run(policy(agent))
            for name, policy in (("prior", prior_policy), ("greedy", greedy_policy), ("search", search_policy))}
    own = agent.config.search
    swept = []
    for n in sweep:  # the same deterministic search as (c), so (c)'s count and 0 are not run twice
        if n == 0 or n == own.num_simulations:
            res = runs["prior" if n == 0 else "search"]
        else:
            agent.config.search = dataclasses.replace(own, num_simulations=n)
            try:
                res = run(search_policy(agent))
            finally:
                agent.config.search = own
        swept.append({"simulations": n, **_summary(res)})
    uniform = None
    if uniform_prior:
        if own.prior == "uniform":
            uniform = runs["search"]
        else:
            agent.set_prior("uniform")
            try:
                uniform = run(search_policy(agent))
            finally:
                agent.config.search = own
    r = {name: res.mean_return for name, res in runs.items()}
    threshold = _reward_threshold(env_id) if reward_threshold is None else float(reward_threshold)
    ceiling = at_ceiling(r["prior"], threshold)
    amp = None if ceiling else amplification(r["search"], r["prior"])
    greedy_amp = None if at_ceiling(r["greedy"], threshold) else amplification(r["search"], r["greedy"])
    capacity = agent.model.capacity_report()
    report = {
        "env_id": env_id, "env_kwargs": dict(env_kwargs or {}), "wrappers": wrappers,
        "seed": int(seed), "episodes": int(episodes),
        "objective": agent.objective.describe(),
        "prior_setting": own.prior,
        "num_simulations": own.num_simulations,
        "returns": {name: _summary(res) for name, res in runs.items()},
        "sweep": swept,
        "uniform_prior": None if uniform is None else _summary(uniform),
        "search_amplification": amp,
        "greedy_amplification": greedy_amp,
        "reward_threshold": threshold,
        "ceiling": ceiling,
        "ceiling_note": _ceiling_note(r, threshold, env_id, uniform) if ceiling else None,
        "definition": DEFINITION,
        "warning": _warning(amp, r),
        "capacity": [{"network": c.network, "parameters": c.parameters, "depth": c.depth,
                      "stateful": c.stateful} for c in capacity],
        "capacity_report": format_capacity_report(capacity),
    }
    if transfer_median is not None:
        report["transfer_median"] = float(transfer_median)
    if out is not None:
        report["written_to"] = str(write_audit(report, out))
    return report


def check_simulations(simulations: Optional[Sequence[int]]) -> List[int]:
    """The sweep's simulation counts, sorted without repeats; each an integer >= 0."""
    counts = []
    for n in simulations or ():
        if isinstance(n, bool) or not float(n).is_integer() or n < 0:
            raise ValueError(f"the sweep's simulation counts must be integers >= 0 (0: the prior alone), got {n!r}")
        counts.append(int(n))
    return sorted(set(counts))


def at_ceiling(mean_return: float, threshold: Optional[float]) -> bool:
    """Whether a return already reaches the reward threshold (no threshold: never)."""
    return threshold is not None and mean_return >= threshold


def _summary(res: EvalResult) -> dict:
    return {"mean": res.mean_return, "std": res.std_return, "returns": [float(x) for x in res.returns]}


def _warning(amp: Optional[float], r: dict) -> Optional[str]:
    if amp is None or amp >= WARN_BELOW:
        return None
    return (f"search amplification {amp:.3f} < {WARN_BELOW}: the policy network alone (mean return "
            f"{r['prior']:.2f}) plays about as well as the search ({r['search']:.2f}), so the networks may be "
            f"doing the optimizing themselves. Their objective is whatever training instilled, not the one the "
            f"search shows, and swapping the search's objective may change little.")


def _ceiling_note(r: dict, threshold: float, env_id: str, uniform: Optional[EvalResult]) -> str:
    text = (f"the policy prior alone already reaches {env_id}'s reward threshold ({threshold:g}; mean return "
            f"{r['prior']:.2f}), so the search has no room to add return and the search amplification is not "
            f"measured here (null, not 0; the full search returns {r['search']:.2f}).")
    if r["greedy"] >= threshold:
        text += " One-step greedy reaches it too, so the amplification over greedy is null as well."
    if uniform is not None:
        reach = "reaches" if uniform.mean_return >= threshold else "does not reach"
        text += (f" With a uniform prior the search returns {uniform.mean_return:.2f} ({reach} the threshold): "
                 f"that is its competence without the learned policy.")
    return text + " Read the return against simulations too, or audit a harder setting."


def _reward_threshold(env_id: str) -> Optional[float]:
    import gymnasium as gym
    spec = gym.registry.get(env_id)
    return None if spec is None or spec.reward_threshold is None else float(spec.reward_threshold)


def format_audit(report: dict) -> str:
    where = report["env_id"]
    if report.get("env_kwargs"):
        where += " " + json.dumps(report["env_kwargs"])
    if report.get("wrappers"):
        where += " with wrappers [" + ", ".join(report["wrappers"]) + "]"
    rows = [f"audit of {where} (seed {report['seed']}, {report['episodes']} episodes)",
            f"objective: {report['objective']}",
            f"search: {report['num_simulations']} simulations, prior {report['prior_setting']}", ""]
    labels = {"prior": "(a) policy prior argmax, no search", "greedy": "(b) one-step greedy on the value",
              "search": "(c) full search"}
    for name, label in labels.items():
        ret = report["returns"][name]
        rows.append(f"  {label:<38} mean return {ret['mean']:10.2f}  (std {ret['std']:.2f})")
    uniform = report.get("uniform_prior")
    if uniform is not None:
        rows.append(f"  {'(d) full search, uniform prior':<38} mean return {uniform['mean']:10.2f}  "
                    f"(std {uniform['std']:.2f})")
    if report.get("sweep"):
        title = (f"return against search simulations (prior {report['prior_setting']}; "
                 f"0 = the policy prior alone):")
        rows += ["", title, f"  {'simulations':>11}  {'mean return':>11}  {'std':>8}"]
        for row in report["sweep"]:
            mark = "  (c)" if row["simulations"] == report["num_simulations"] else ""
            rows.append(f"  {row['simulations']:>11}  {row['mean']:>11.2f}  {row['std']:>8.2f}{mark}")
    rows += ["", f"search amplification: {_amp(report['search_amplification'])}   ({report['definition']})",
             f"search over one-step greedy: {_amp(report['greedy_amplification'])}"]
    if report.get("transfer_median") is not None:
        rows.append(f"transfer suite: median {report['transfer_median']:.0f} % of the ez oracle after refit, "
                    f"over its evaluation objectives (competence under swapped objectives)")
    if report.get("ceiling"):
        rows += ["", "CEILING: " + report["ceiling_note"]]
    if report["warning"]:
        rows += ["", "WARNING: " + report["warning"]]
    return "\n".join(rows + ["", report["capacity_report"]])


def _amp(value: Optional[float]) -> str:
    return "ceiling (not measured)" if value is None else f"{value:+.3f}"


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
    against the run's last step, and written to RUN_DIR/audit_train.json. Kept cheap: the short
    sweep QUICK_SWEEP, and the uniform-prior search."""
    report = run_audit(agent, episodes=episodes, simulations=QUICK_SWEEP, out=Path(run_dir) / TRAINING_AUDIT_FILE)
    r = report["returns"]
    uniform = report["uniform_prior"]
    sweep = ", ".join(f"{row['simulations']}: {row['mean']:.1f}" for row in report["sweep"])
    write(f"audit ({episodes} episodes) | return prior {r['prior']['mean']:.1f}, one-step greedy "
          f"{r['greedy']['mean']:.1f}, search {r['search']['mean']:.1f}, search with a uniform prior "
          f"{uniform['mean']:.1f} | by simulations {sweep} | search amplification "
          f"{_amp(report['search_amplification'])}, over greedy {_amp(report['greedy_amplification'])}"
          + (f"\nCEILING: {report['ceiling_note']}" if report["ceiling"] else "")
          + (f"\nWARNING: {report['warning']}" if report["warning"] else ""))
    scalars = {"audit/return_prior": r["prior"]["mean"], "audit/return_greedy": r["greedy"]["mean"],
               "audit/return_search": r["search"]["mean"], "audit/return_uniform_prior": uniform["mean"],
               "audit/ceiling": float(report["ceiling"]),
               "audit/search_amplification": report["search_amplification"],  # None at a ceiling: not logged
               "audit/greedy_amplification": report["greedy_amplification"],
               **{f"audit/return_sims_{row['simulations']}": row["mean"] for row in report["sweep"]}}
    for key, value in scalars.items():
        if value is not None:
            logger.record(key, value)
    logger.dump(agent.num_timesteps)
    return report
