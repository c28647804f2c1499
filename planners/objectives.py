"""What the search maximizes, and nothing else.

An objective turns one batched model step into the two numbers the tree backs up:

    Q(s, a) = edge_reward(s, a, s') + discount * leaf_value(s')     (at a leaf)

The search never reads `reward` or `value` from the model directly; it asks the objective. So
replacing the objective changes what the agent does, with no retraining.

Contract (all batched over B, torch in, torch out, on the model's device):
    edge_reward(model, parent_latent, action, out) -> Tensor[B]
    leaf_value(model, out) -> Tensor[B]
    discount: float
    max_depth: int | None    -- a tree-depth limit (None: unlimited)
    describe() -> str        -- a one-line description, logged with runs and stored in checkpoints
    to_spec() -> dict        -- what `objective_from_spec` rebuilds it from (checkpoints, configs)

Built-ins, each composable where it takes a base:
    Learned()                     predicted rewards + learned value (EfficientZero; the default)
    RewardOnly(horizon)           predicted rewards over a fixed horizon, no learned value
    LatentValue(module)           a user nn.Module over latents as the value
    ObservationValue(fn)          a user function over predicted observations as the value
    ObservationReward(fn)         a user function over predicted observations as the reward
    Pessimistic(k)                predicted rewards + (mean - k * std) over the value-head ensemble
    Penalized(base, penalty, w)   base with w * penalty(predicted observation) taken off each edge

User functions are wrapped by `planners.plugins.PluggedFn` (torch or numpy, checked once).
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Callable, Optional, Union

import torch

from nets.output import ModelOutput
from envs.make import load_attr
from planners.plugins import PluggedFn


class Objective(ABC):
    discount: float = 0.997
    max_depth: Optional[int] = None

    @abstractmethod
    def edge_reward(self, model, parent_latent: torch.Tensor, action: torch.Tensor,
                    out: ModelOutput) -> torch.Tensor:
        """Reward credited to the edge (parent_latent, action) -> out.latent, shape [B]."""

    @abstractmethod
    def leaf_value(self, model, out: ModelOutput) -> torch.Tensor:
        """Value of the state out.latent when it is a leaf of the tree, shape [B]."""

    @abstractmethod
    def describe(self) -> str:
        """One readable line: what this objective maximizes."""

    @abstractmethod
    def to_spec(self) -> dict:
        """A plain dict `objective_from_spec` turns back into an equivalent objective."""

    def edge_parts(self, model, parent_latent, action, out) -> dict:
        """The edge reward split into named parts that sum to it (for `explain`); each [B]."""
        return {type(self).__name__: self.edge_reward(model, parent_latent, action, out)}

    def __repr__(self) -> str:
        return self.describe()


class ObjectiveNotRestorable(ValueError):
    """A stored objective used a function with no 'module:attr' reference (e.g. a lambda)."""


class Learned(Objective):
    """EfficientZero's objective: predicted rewards plus the learned value at the leaf."""

    def __init__(self, discount: float = 0.997):
        self.discount = float(discount)

    def edge_reward(self, model, parent_latent, action, out):
        return out.reward

    def leaf_value(self, model, out):
        return out.value

    def describe(self) -> str:
        return f"Learned(discount={self.discount:g}): sum of predicted rewards + learned value at the leaf"

    def to_spec(self) -> dict:
        return {"name": "learned", "discount": self.discount}


class RewardOnly(Objective):
    """Predicted rewards over a fixed horizon; no learned value anywhere in the tree."""

    def __init__(self, horizon: int, discount: float = 0.997):
        if int(horizon) < 1:
            raise ValueError(f"RewardOnly needs horizon >= 1, got {horizon!r}")
        self.max_depth = int(horizon)
        self.discount = float(discount)

    def edge_reward(self, model, parent_latent, action, out):
        return out.reward

    def leaf_value(self, model, out):
        return torch.zeros_like(out.reward)

    def describe(self) -> str:
        return (f"RewardOnly(horizon={self.max_depth}, discount={self.discount:g}): "
                f"sum of predicted rewards over at most {self.max_depth} steps, leaf value 0")

    def to_spec(self) -> dict:
        return {"name": "reward-only", "horizon": self.max_depth, "discount": self.discount}


def predicted_observation(model, latent: torch.Tensor, who: str) -> torch.Tensor:
    """`model.decode(latent)`, or a clear error when the model was trained without a decoder."""
    decode = getattr(model, "decode", None)
    has_decoder = decode is not None and getattr(model, "has_decoder", True)
    obs = decode(latent) if has_decoder else None
    if obs is None:
        raise ValueError(f"objective {who} reads predicted observations, but this model has no observation "
                         f"decoder. Train with the decoder on (--set net.use_decoder=true), or use an "
                         f"objective over latents (LatentValue).")
    return obs


def _fn_spec(fn: PluggedFn) -> dict:
    # A function with no importable reference is stored by description only; see _fn_from_spec.
    return {"ref": fn.ref, "description": fn.name}


def _fn_from_spec(spec: dict, key: str, what: str) -> str:
    entry = spec[key]
    if isinstance(entry, str):
        return entry
    if entry.get("ref"):
        return entry["ref"]
    raise ObjectiveNotRestorable(
        f"The stored objective {spec['name']!r} uses the {what} "
        f"{entry.get('description')}, which has no importable 'module:attr' reference (a lambda or a "
        f"function defined inside another function), so only its description was saved. Call "
        f"agent.set_objective(...) with it again, or define it at module level so it can be stored.")


class LatentValue(Objective):
    """A user network over latents is the value: `module(latent) -> [B]` (or `[B, 1]`).

    By default it is the whole objective (edge rewards 0), so nothing learned for the old goal is
    left in the tree; `with_reward=True` keeps the predicted rewards (EfficientZero's Q with only
    the value swapped).
    """

    def __init__(self, module: Union[torch.nn.Module, str], with_reward: bool = False,
                 discount: float = 0.997):
        self.ref = module if isinstance(module, str) else None
        if isinstance(module, str):
            # 'module:attr' naming an nn.Module instance, or a class / factory that builds one.
            module = load_attr(module, "latent value module")
            if not isinstance(module, torch.nn.Module) and callable(module):
                module = module()
        if not isinstance(module, torch.nn.Module):
            raise ValueError(f"LatentValue needs a torch.nn.Module (or a 'module:attr' naming one), got "
                             f"{type(module).__name__}")
        self.module = module
        self.fn = PluggedFn(module, "latent value module", numpy=False)
        self.fn.name = self.ref or self.fn.name
        self.with_reward = bool(with_reward)
        self.discount = float(discount)

    def edge_reward(self, model, parent_latent, action, out):
        return out.reward if self.with_reward else torch.zeros_like(out.reward)

    def leaf_value(self, model, out):
        return self.fn(out.latent)

    def describe(self) -> str:
        reward = "sum of predicted rewards + " if self.with_reward else ""
        return f"LatentValue({self.fn.name}, discount={self.discount:g}): {reward}user network over latents as the value"

    def to_spec(self) -> dict:
        return {"name": "latent-value", "module": {"ref": self.ref, "description": self.fn.name},
                "with_reward": self.with_reward, "discount": self.discount}


class ObservationValue(Objective):
    """A user function over predicted observations is the value: `fn(obs[B, ...]) -> [B]`.

    Needs a model with an observation decoder. Edge rewards are 0 unless `with_reward=True`
    (see LatentValue). `numpy`: see planners.plugins (None: detected on the first call).
    """

    def __init__(self, fn: Union[Callable, str], with_reward: bool = False, discount: float = 0.997,
                 numpy: Optional[bool] = None):
        self.fn = PluggedFn(fn, "observation value function", numpy=numpy)
        self.with_reward = bool(with_reward)
        self.discount = float(discount)

    def edge_reward(self, model, parent_latent, action, out):
        return out.reward if self.with_reward else torch.zeros_like(out.reward)

    def leaf_value(self, model, out):
        return self.fn(predicted_observation(model, out.latent, f"{type(self).__name__}({self.fn.name})"))

    def describe(self) -> str:
        reward = "sum of predicted rewards + " if self.with_reward else ""
        return (f"ObservationValue({self.fn.name}, discount={self.discount:g}): "
                f"{reward}user function of the predicted observation as the value")

    def to_spec(self) -> dict:
        return {"name": "observation-value", "fn": _fn_spec(self.fn), "with_reward": self.with_reward,
                "discount": self.discount}


class ObservationReward(Objective):
    """A user function over predicted observations is the reward of reaching them; leaf value 0.

    `fn(obs')` is credited to the transition into the predicted observation obs'. No learned value
    is used, so `horizon` (a tree-depth limit, optional) plays RewardOnly's role.
    """

    def __init__(self, fn: Union[Callable, str], horizon: Optional[int] = None, discount: float = 0.997,
                 numpy: Optional[bool] = None):
        if horizon is not None and int(horizon) < 1:
            raise ValueError(f"ObservationReward needs horizon >= 1 or None, got {horizon!r}")
        self.fn = PluggedFn(fn, "observation reward function", numpy=numpy)
        self.max_depth = None if horizon is None else int(horizon)
        self.discount = float(discount)

    def edge_reward(self, model, parent_latent, action, out):
        return self.fn(predicted_observation(model, out.latent, f"{type(self).__name__}({self.fn.name})"))

    def leaf_value(self, model, out):
        return torch.zeros_like(out.reward)

    def describe(self) -> str:
        horizon = f", horizon={self.max_depth}" if self.max_depth else ""
        return (f"ObservationReward({self.fn.name}{horizon}, discount={self.discount:g}): "
                f"sum of a user reward of each predicted observation, leaf value 0")

    def to_spec(self) -> dict:
        return {"name": "observation-reward", "fn": _fn_spec(self.fn), "horizon": self.max_depth,
                "discount": self.discount}


class Pessimistic(Objective):
    """Predicted rewards + (mean - k * std) of the value heads: distrust values the heads dispute.

    std is the population standard deviation over the E heads of `ModelOutput.value_ensemble`.
    """

    def __init__(self, k: float = 1.0, discount: float = 0.997):
        if float(k) < 0:
            raise ValueError(f"Pessimistic needs k >= 0, got {k!r}")
        self.k = float(k)
        self.discount = float(discount)

    def edge_reward(self, model, parent_latent, action, out):
        return out.reward

    def leaf_value(self, model, out):
        ens = out.value_ensemble
        if ens is None or ens.ndim != 2 or ens.shape[1] < 2:
            heads = "no value ensemble" if ens is None else f"{ens.shape[-1]} value head"
            raise ValueError(f"Pessimistic(k={self.k:g}) needs a model with 2 or more value heads, but this "
                             f"model has {heads}. Train with --set net.num_value_heads=2 (or more).")
        return ens.mean(dim=1) - self.k * ens.std(dim=1, correction=0)

    def describe(self) -> str:
        return (f"Pessimistic(k={self.k:g}, discount={self.discount:g}): sum of predicted rewards + "
                f"(mean - {self.k:g} * std) of the value heads at the leaf")

    def to_spec(self) -> dict:
        return {"name": "pessimistic", "k": self.k, "discount": self.discount}


class Penalized(Objective):
    """`base` with `weight * penalty(obs')` subtracted from the reward of each transition into obs'.

    The penalty is a user function over predicted observations (needs a decoder); discount and
    depth limit are the base objective's.
    """

    def __init__(self, base: Objective, penalty: Union[Callable, str], weight: float = 1.0,
                 numpy: Optional[bool] = None):
        if not isinstance(base, Objective):
            raise ValueError(f"Penalized needs an Objective as its base, got {type(base).__name__}")
        self.base = base
        self.penalty = PluggedFn(penalty, "penalty function", numpy=numpy)
        self.weight = float(weight)
        self.discount = base.discount
        self.max_depth = base.max_depth

    def edge_reward(self, model, parent_latent, action, out):
        obs = predicted_observation(model, out.latent, f"Penalized({self.penalty.name})")
        return self.base.edge_reward(model, parent_latent, action, out) - self.weight * self.penalty(obs)

    def leaf_value(self, model, out):
        return self.base.leaf_value(model, out)

    def edge_parts(self, model, parent_latent, action, out) -> dict:
        obs = predicted_observation(model, out.latent, f"Penalized({self.penalty.name})")
        return {**self.base.edge_parts(model, parent_latent, action, out),
                f"-{self.weight:g} * {self.penalty.name}": -self.weight * self.penalty(obs)}

    def describe(self) -> str:
        return f"Penalized({self.penalty.name}, weight={self.weight:g}) of [{self.base.describe()}]"

    def to_spec(self) -> dict:
        return {"name": "penalized", "base": self.base.to_spec(), "penalty": _fn_spec(self.penalty),
                "weight": self.weight}


SHORT_NAMES = "learned | reward-only:H | pessimistic:K, or a JSON spec"


def objective_from_spec(spec: Union[str, dict, Objective], discount: Optional[float] = None) -> Objective:
    """Build an objective from a short name, a JSON string or a dict made by `to_spec()`.

    Short names: 'learned', 'reward-only:H' (horizon H), 'pessimistic:K' (k = K). `discount` fills
    in a spec that names none (the agent passes its own, so a CLI name plans with the right one).
    """
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        spec = json.loads(text) if text.startswith("{") else _parse_short(text)
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"objective spec must be a name ({SHORT_NAMES}) or a dict with a 'name', got {spec!r}")
    g = spec.get("discount", discount)
    kw = {} if g is None else {"discount": float(g)}
    name = spec["name"]
    if name == "learned":
        return Learned(**kw)
    if name == "reward-only":
        return RewardOnly(spec["horizon"], **kw)
    if name == "pessimistic":
        return Pessimistic(spec.get("k", 1.0), **kw)
    if name == "latent-value":
        return LatentValue(_fn_from_spec(spec, "module", "latent value module"),
                           spec.get("with_reward", False), **kw)
    if name == "observation-value":
        return ObservationValue(_fn_from_spec(spec, "fn", "observation value function"),
                                spec.get("with_reward", False), **kw)
    if name == "observation-reward":
        return ObservationReward(_fn_from_spec(spec, "fn", "observation reward function"),
                                 spec.get("horizon"), **kw)
    if name == "penalized":
        return Penalized(objective_from_spec(spec["base"], discount),
                         _fn_from_spec(spec, "penalty", "penalty function"), spec.get("weight", 1.0))
    raise ValueError(f"unknown objective {name!r}; known: learned, reward-only, pessimistic, latent-value, "
                     f"observation-value, observation-reward, penalized")


def _parse_short(text: str) -> dict:
    name, _, arg = text.partition(":")
    name = name.strip().lower().replace("_", "-")
    try:
        if name == "learned" and not arg:
            return {"name": "learned"}
        if name == "reward-only" and arg:
            return {"name": "reward-only", "horizon": int(arg)}
        if name == "pessimistic":
            return {"name": "pessimistic", "k": float(arg) if arg else 1.0}
    except ValueError:
        pass
    raise ValueError(f"cannot read objective {text!r}; expected {SHORT_NAMES}")
