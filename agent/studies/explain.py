"""What one search considered, for a person: the root table and the principal variation.

`explain(agent, obs)` runs the agent's greedy search (no root noise, as evaluation does) at one
observation and returns a JSON-friendly dict; `format_explanation(d)` renders it as text:

  * the objective's description and the prior setting (what the search maximized, and how much
    the learned prior steered it);
  * per root action: visits, selection prior, the model's predicted reward, and Q with its parts
    under the objective, Q = edge reward + discount * child value (Q and the child value are the
    search's backed-up means; None where the search never tried the action), and the edge reward
    split into the objective's named parts (e.g. base reward and penalty for Penalized);
  * the principal variation (the most visited path), with the predicted observation at each step
    when the model has a decoder, as the objective reads it: anchored at the real observation
    where the objective anchors its predictions (planners/anchor.py), else as decoded;
  * the capacity report of the networks.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from nets.budget import format_capacity_report
from planners.anchor import RootAnchor
from planners.objectives import anchored_observation
from planners.policies import plan
from planners.tree import ROOT, principal_variation


def explain(agent, observation) -> dict:
    obs = np.asarray(observation, dtype=agent.obs_dtype).reshape(1, *agent.obs_shape)
    model, objective = agent.model, agent.objective
    with torch.no_grad():
        r = plan(model, objective, obs, agent.config.search, rng=np.random.default_rng(0),
                 add_noise=False, deterministic=True)
        root = model.initial_inference(objective.model_view(obs))
        predicted_reward, parts = _one_step(model, objective, root, obs)
        decode, anchored = _observation_view(model, objective, obs)
        pv = _principal_variation(model, root, r.tree, decode)
    discount = objective.discount
    actions = [{"action": a, "visits": int(r.visit_counts[0, a]), "prior": float(r.prior[0, a]),
                "predicted_reward": float(predicted_reward[a]), "edge_reward": _num(r.edge_reward[0, a]),
                "edge_reward_parts": {name: float(v[a]) for name, v in parts.items()},
                "discounted_child_value": _num(discount * r.child_value[0, a]), "q": _num(r.q_values[0, a])}
               for a in range(r.visit_counts.shape[1])]
    capacity = model.capacity_report()
    return {"env_id": agent.env_id, "observation": _floats(obs[0]), "objective": objective.describe(),
            "discount": discount, "prior_setting": agent.config.search.prior,
            "num_simulations": agent.config.search.num_simulations, "action": int(r.action[0]),
            "root_value": float(r.root_value[0]), "search_depth": int(r.max_depth[0]),
            "actions": actions, "principal_variation": pv, "has_decoder": bool(model.has_decoder),
            "anchored": anchored,
            "capacity_report": format_capacity_report(capacity)}


def _one_step(model, objective, root, obs):
    """For each root action, one batched model step: the model's own predicted reward, and the
    objective's edge reward split into its named parts (Objective.edge_parts)."""
    actions = root.policy_logits.shape[1]
    objective.observe(np.repeat(obs, actions, axis=0))  # every row's root is the one observation
    latent = root.latent.expand(actions, *root.latent.shape[1:])
    kwargs = {} if root.reward_state is None else {"reward_state": root.reward_state.expand(actions, -1)}
    action = torch.arange(actions, device=latent.device)
    out = model.recurrent_inference(latent, action, **kwargs)
    parts = {name: v.cpu().numpy() for name, v in objective.edge_parts(model, latent, action, out).items()}
    return out.reward.cpu().numpy(), parts


def _observation_view(model, objective, obs):
    """(decode(latent [1, ...]) -> predicted observation as the objective reads it, whether that is
    anchored at `obs`)."""
    anchor = getattr(objective, "anchor", None)
    if not (model.has_decoder and isinstance(anchor, RootAnchor) and anchor.on):
        return model.decode, False
    objective.observe(obs)  # the one root, so the anchor's rows match the path's
    return (lambda latent: anchored_observation(anchor, model, latent, "explain")), anchor.root is not None


def _principal_variation(model, root, tree, decode) -> List[dict]:
    """The most visited path; latents are re-derived by stepping the model along it (to decode)."""
    steps, node, latent, reward_state = [], ROOT, root.latent, root.reward_state
    for action in principal_variation(tree, 0):
        node = int(tree.children[0, node, action])
        kwargs = {} if reward_state is None else {"reward_state": reward_state}
        out = model.recurrent_inference(latent, torch.tensor([action], device=latent.device), **kwargs)
        latent, reward_state = out.latent, out.reward_state
        visits = int(tree.visit_count[0, node])
        steps.append({"depth": int(tree.depth[0, node]), "action": action, "visits": visits,
                      "edge_reward": float(tree.edge_reward[0, node]),
                      "value": float(tree.value_sum[0, node] / max(visits, 1)),
                      "predicted_observation": _floats(decode(latent)[0]) if model.has_decoder else None})
    return steps


def format_explanation(d: dict) -> str:
    lines = [f"{d['env_id']}: search at observation {_short(d['observation'])}",
             f"objective: {d['objective']}",
             f"search: {d['num_simulations']} simulations, prior {d['prior_setting']}, depth {d['search_depth']}; "
             f"root value {d['root_value']:.3f}; chosen action {d['action']}",
             "", "root (Q = edge reward + discounted child value, under the objective):"]
    header = ("action", "visits", "prior", "pred. reward", "edge reward", "disc. child value", "Q")
    rows = [(str(a["action"]) + (" *" if a["action"] == d["action"] else ""), str(a["visits"]),
             f"{a['prior']:.3f}", f"{a['predicted_reward']:.3f}", _fmt(a["edge_reward"]),
             _fmt(a["discounted_child_value"]), _fmt(a["q"])) for a in d["actions"]]
    lines += _table(header, rows)
    part_names = list(d["actions"][0]["edge_reward_parts"]) if d["actions"] else []
    if len(part_names) > 1:
        lines += ["", "edge reward parts (one model step from the root):"]
        lines += _table(("action", *part_names), [(str(a["action"]), *(f"{a['edge_reward_parts'][n]:.3f}"
                                                                     for n in part_names)) for a in d["actions"]])
    anchored = " (predicted observations anchored at the real one, as the objective reads them)"
    lines += ["", "principal variation (most visited path)" + (anchored if d.get("anchored") else "") + ":"]
    if not d["principal_variation"]:
        lines.append("  (empty: no child of the root was visited)")
    for s in d["principal_variation"]:
        text = (f"  depth {s['depth']}: action {s['action']}  visits {s['visits']}  "
                f"edge reward {s['edge_reward']:.3f}  value {s['value']:.3f}")
        if s["predicted_observation"] is not None:
            text += f"  predicted obs {_short(s['predicted_observation'])}"
        lines.append(text)
    if not d["has_decoder"]:
        lines.append("  (no predicted observations: the model has no decoder; train with net.use_decoder=true)")
    return "\n".join(lines + ["", "capacity:", d["capacity_report"]])


def _table(header, rows) -> List[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows]]


def _num(x) -> Optional[float]:
    """None for an unvisited action (nan in the search result), so the JSON stays standard."""
    return None if not np.isfinite(x) else float(x)


def _fmt(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.3f}"


def _floats(x) -> List[float]:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return [round(float(v), 4) for v in arr.reshape(-1)]


def _short(values: List[float], limit: int = 8) -> str:
    head = ", ".join(f"{v:.3f}" for v in values[:limit])
    return f"[{head}{', ...' if len(values) > limit else ''}] ({len(values)} values)" if len(values) > limit \
        else f"[{head}]"
