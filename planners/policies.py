"""Two policies on top of `search`, as in mctx: each turns B observations into a searched tree,
the actions to play and the policy targets to train on.

    out = puct_policy(model, objective, obs, config, rng=rng)      # MuZero / EfficientZero
    out = gumbel_policy(model, objective, obs, config, rng=rng)    # Gumbel MuZero
    out = plan(model, objective, obs, config, rng=rng)             # the one config.algorithm names

Every policy first shows the objective the real root observations (`objective.observe`), so an
objective can read a goal or a target the observation shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Dict

import numpy as np
import torch

from nets.output import ModelOutput
from planners import fused, gumbel, kernels
from planners.config import SearchConfig
from planners.search import PUCT, GumbelRoot, PUCTRoot, search
from planners.tree import ROOT, Tree


@dataclass
class PolicyOutput:
    """What a policy decided, per environment (numpy arrays, B rows, A actions)."""

    action: np.ndarray  # [B] chosen action
    action_weights: np.ndarray  # [B, A] the policy target: distribution to train the policy on
    prior: np.ndarray  # [B, A] root prior the search used (masked, mixed, before root noise)
    visit_counts: np.ndarray  # [B, A] visits of each root action
    q_values: np.ndarray  # [B, A] edge_reward + discount * child_value; nan where unvisited
    edge_reward: np.ndarray  # [B, A] objective.edge_reward of each root action; nan where unvisited
    child_value: np.ndarray  # [B, A] mean backed-up value of each root child; nan where unvisited
    root_value: np.ndarray  # [B] mean backed-up value of the root
    max_depth: np.ndarray  # [B] deepest node of each tree
    tree: Tree


def puct_policy(model, objective, obs, config: SearchConfig, *, rng: np.random.Generator,
                add_noise: bool = True, action_mask=None, temperature: float = 1.0,
                deterministic: bool = False, backend: ModuleType = kernels) -> PolicyOutput:
    """pUCT everywhere, Dirichlet noise on the root prior when `add_noise`; acts by sampling
    visits^(1/temperature), or the most visited action when `deterministic` (on ties, the one of
    highest root Q, then the lowest).
    The policy target is the root's visit distribution (the prior where nothing was visited), or
    the improved policy under `config.policy_target="improved"`."""
    _check_rng(rng)
    root = _root(model, objective, obs, config.inference if backend is kernels else "torch")
    rule = PUCTRoot(rng if add_noise else None, config.dirichlet_alpha, config.root_exploration_fraction)
    tree = search(model, objective, root, config.num_simulations, root_rule=rule,
                  interior_rule=PUCT(config.pb_c_init, config.pb_c_base), prior_mix=config.prior_mix(),
                  root_prior_mix=config.root_prior_mix(), action_mask=action_mask, backend=backend,
                  inference=config.inference)
    stats = _root_stats(tree, backend)
    visits = stats[0]
    weights = _policy_target(tree, visits, rule.root_prior, config, backend)
    action = choose_action(visits, tree.legal[:, ROOT], temperature, deterministic, rng, backend, q=stats[3])
    return _output(action, weights, rule.root_prior, tree, stats, backend)


def gumbel_policy(model, objective, obs, config: SearchConfig, *, rng: np.random.Generator,
                  add_noise: bool = True, action_mask=None, temperature: float = 1.0,
                  deterministic: bool = False, backend: ModuleType = kernels) -> PolicyOutput:
    """Sequential halving at the root (Gumbel noise when `add_noise`), pUCT below; acts by its
    own rule (the Gumbel noise already randomizes it, so `temperature` and `deterministic` have
    no effect) and targets the improved policy softmax(logits + sigma(completed Q)), or the visit
    distribution under `config.policy_target="visits"`."""
    _check_rng(rng)
    root = _root(model, objective, obs, config.inference if backend is kernels else "torch")
    rule = GumbelRoot(config.num_simulations, rng if add_noise else None, config.gumbel_max_considered,
                      config.gumbel_c_visit, config.gumbel_c_scale)
    tree = search(model, objective, root, config.num_simulations, root_rule=rule,
                  interior_rule=PUCT(config.pb_c_init, config.pb_c_base), prior_mix=config.prior_mix(),
                  root_prior_mix=config.root_prior_mix(), action_mask=action_mask, backend=backend,
                  inference=config.inference)
    stats = _root_stats(tree, backend)
    action, weights = gumbel.decide(tree, rule.state, stats[0], backend)
    if config.trains_on_visits():
        weights = _policy_target(tree, stats[0], rule.root_prior, config, backend)
    return _output(action, weights, rule.root_prior, tree, stats, backend)


POLICIES: Dict[str, Callable[..., PolicyOutput]] = {"puct": puct_policy, "gumbel": gumbel_policy}


def plan(model, objective, obs, config: SearchConfig, **kwargs) -> PolicyOutput:
    """The policy `config.algorithm` names (POLICIES), with the same keyword arguments."""
    return POLICIES[config.algorithm](model, objective, obs, config, **kwargs)


def choose_action(visits, legal, temperature: float, deterministic: bool, rng: np.random.Generator,
                  backend: ModuleType = kernels, q=None) -> np.ndarray:
    """Sample from visits^(1/temperature), or argmax when deterministic (or temperature <= 0):
    on ties the action of highest root Q `q` [B, A] (when given), then the lowest. Rows without
    visits weigh their legal actions alike."""
    greedy = bool(deterministic or temperature <= 0)
    u = np.zeros(len(visits)) if greedy else rng.random(len(visits))
    out = np.empty(len(visits), np.int64)
    q = np.zeros(visits.shape) if q is None else q
    backend.choose_actions(np.ascontiguousarray(visits, np.int64), np.ascontiguousarray(q, np.float64),
                           np.ascontiguousarray(legal, np.bool_),
                           float(temperature) if not greedy else 1.0, greedy, u, out)
    return out


def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")


def _root(model, objective, obs, inference: str):
    """The roots' model output from what the objective shows the model (`Objective.model_view`):
    a `fused.PackedRoot` where the search will run fused (planners/fused.py), else a ModelOutput.
    The objective sees the real observations first."""
    if isinstance(obs, ModelOutput):
        return obs
    objective.observe(obs)
    obs = objective.model_view(obs)
    program = fused.fused_program(model, objective, inference)
    if program is not None and program.has_representation:
        root = fused.packed_roots(model, program, obs)
        if root is not None:
            return root
    with torch.no_grad():
        return model.initial_inference(obs)


def _policy_target(tree: Tree, visits, root_prior, config: SearchConfig, backend: ModuleType) -> np.ndarray:
    """What the policy trains toward (config.policy_target): the root's visit distribution (the
    prior where nothing was visited), or the improved policy of the root's values."""
    if not config.trains_on_visits():
        return gumbel.improved_policy(tree, root_prior, config.gumbel_c_visit, config.gumbel_c_scale, backend)
    total = visits.sum(axis=1, keepdims=True)
    return np.where(total > 0, visits / np.maximum(total, 1), root_prior)


def _root_stats(tree: Tree, backend: ModuleType):
    B, A = tree.batch_size, tree.num_actions
    visits = np.empty((B, A), np.int64)
    edge_reward, child_value, q_values = (np.empty((B, A)) for _ in range(3))
    args = (tree, ROOT, visits, edge_reward, child_value, q_values)
    kernels.specialize(backend.child_stats, *args)(*args)
    return visits, edge_reward, child_value, q_values


def _output(action, weights, prior, tree, stats, backend) -> PolicyOutput:
    visits, edge_reward, child_value, q_values = stats
    return PolicyOutput(action=action, action_weights=weights, prior=prior, visit_counts=visits,
                        q_values=q_values, edge_reward=edge_reward, child_value=child_value,
                        root_value=tree.node_value(ROOT),
                        max_depth=kernels.specialize(backend.deepest, tree)(tree), tree=tree)
