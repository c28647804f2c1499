"""What the search maximizes, and nothing else.

An objective turns one batched model step into the two numbers the tree backs up:

    Q(s, a) = edge_reward(s, a, s') + discount * leaf_value(s')     (at a leaf)

The search never reads `reward` or `value` from the model directly; it asks the objective. So
replacing the objective changes what the agent does, with no retraining.

Contract (all batched over B, torch in, torch out, on the model's device):
    edge_reward(model, parent_latent, action, out) -> Tensor[B]
    leaf_value(model, out) -> Tensor[B]
    terminal_value(model, out) -> Tensor[B]   -- the value of a state the model predicts terminal
                                                 (optional: 0 by default; see Objective)
    ends(model, out) -> Tensor[B] bool | None -- states the objective itself ends the episode in
                                                 (optional: none by default)
    policy_logits(model, out) -> Tensor[B, A] | None -- a policy prior fitted for the objective
                                                 (optional: the model's own by default)
    discount: float
    max_depth: int | None    -- a tree-depth limit (None: unlimited)
    observe(root_obs)        -- the real observations at the B roots, before each search (optional)
    describe() -> str        -- a one-line description, logged with runs and stored in checkpoints
    to_spec() -> dict        -- what `objective_from_spec` rebuilds it from (checkpoints, configs)

One open registry names every kind: `@register("name")` on a class makes `{"name": ...}` specs,
short names on the command line and checkpoints build it through `Class.from_spec`.

Built-ins, each composable where it takes a base:
    Learned()                     predicted rewards + learned value (EfficientZero; the default)
    RewardOnly(horizon)           predicted rewards over a fixed horizon, no learned value
    LatentValue(module)           a user nn.Module over latents as the value
    ObservationValue(fn)          a user function over predicted observations as the value
    ObservationReward(fn)         a user function over predicted observations as the reward
    Pessimistic(k)                predicted rewards + (mean - k * std) over the value-head ensemble
    Penalized(base, penalty, w)   base with w * penalty(predicted observation) taken off each edge
    Sum(base, other, w)           base + w * other, edge by edge and leaf by leaf

The functions over predicted observations (ObservationValue, ObservationReward, Penalized's
penalty) may take a second argument, fn(obs, root_obs): then they also get the real observation
at each tree's root (root-conditioned, like ObservedGoalDistance; see planners.plugins).
    ObservedGoalDistance(...)     minus the distance from a predicted position to a goal read from
                                  the real root observation (a root-conditioned objective)

Every objective that reads predicted observations reads them anchored at the real root
observation (`anchor=True`, planners/anchor.py): the model's decoding error at each tree's root is
taken out of every prediction in that tree. `anchor=False` reads them as decoded.

User functions are wrapped by `planners.plugins.PluggedFn` (torch or numpy, checked once).
"""
from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Dict, Mapping, Optional, Sequence, Type, Union

import numpy as np
import torch

from common.imports import load_attr
from nets.output import ModelOutput
from planners.anchor import RootAnchor
from planners.plugins import PluggedFn

DEFAULT_DISCOUNT = 0.997  # EfficientZero's; AgentConfig.discount defaults to it too

OBJECTIVES: Dict[str, Type["Objective"]] = {}


def register(name: str):
    """Class decorator: name an objective kind, so specs, the CLI and checkpoints can build it."""
    def add(cls):
        if name in OBJECTIVES and OBJECTIVES[name] is not cls:
            raise ValueError(f"objective kind {name!r} is registered twice ({OBJECTIVES[name].__name__}, "
                             f"{cls.__name__})")
        cls.kind = name
        OBJECTIVES[name] = cls
        return cls
    return add


class Objective(ABC):
    """What the search maximizes (see the module docstring for the contract).

    Terminal states. A state the model predicts terminal (`ModelOutput.terminal`) is absorbing
    under every objective: the search never expands it, so nothing beyond it is ever backed up,
    and its worth is `terminal_value` in place of `leaf_value`. The rule: an objective of
    *rewards* (Learned, RewardOnly, ObservationReward, Pessimistic, aux heads) values an absorbing
    state at 0, the value of what follows an episode's end once its rewards are counted (the
    default); an objective that is a *value over states* (ObservationValue, LatentValue,
    ObservedGoalDistance) values it as it values any state, by its own leaf value: reaching a goal
    state and staying there is worth that state's value, not 0. Composed objectives follow their
    parts: Penalized takes its base's, Sum adds its two parts'.
    """

    kind: ClassVar[str] = ""  # the registry name, set by @register
    discount: float = DEFAULT_DISCOUNT
    # False when built without a discount: the agent it is set on plans it at its own
    # (`with_discount`), as a spec naming none is; a value tuned at 0.9 must not run at 0.997.
    discount_given: bool = True
    max_depth: Optional[int] = None

    def _set_discount(self, discount: Optional[float]) -> None:
        self.discount = DEFAULT_DISCOUNT if discount is None else float(discount)
        self.discount_given = discount is not None

    @property
    def discount_for_spec(self) -> Optional[float]:
        """The discount `to_spec` writes: None when none was given, so a spec rebuilt from it
        still takes the agent's."""
        return self.discount if self.discount_given else None

    def with_discount(self, discount: Optional[float]) -> "Objective":
        """This objective planned at `discount` if it was built without one (a shallow copy; the
        caller's object is left as it was), else itself."""
        if self.discount_given or discount is None:
            return self
        bound = copy.copy(self)
        bound._set_discount(discount)
        return bound

    @abstractmethod
    def edge_reward(self, model, parent_latent: torch.Tensor, action: torch.Tensor,
                    out: ModelOutput) -> torch.Tensor:
        """Reward credited to the edge (parent_latent, action) -> out.latent, shape [B]."""

    @abstractmethod
    def leaf_value(self, model, out: ModelOutput) -> torch.Tensor:
        """Value of the state out.latent when it is a leaf of the tree, shape [B]."""

    def terminal_value(self, model, out: ModelOutput) -> torch.Tensor:
        """Value of the state out.latent in the rows the model predicts terminal, shape [B] (the
        search reads only those rows). 0 by default: see the class docstring for the rule."""
        return torch.zeros_like(out.reward)

    @abstractmethod
    def describe(self) -> str:
        """One readable line: what this objective maximizes."""

    @abstractmethod
    def to_spec(self) -> dict:
        """A plain dict `objective_from_spec` turns back into an equivalent objective."""

    def observe(self, root_obs) -> None:
        """Called with the real observations at the B roots (row b: tree b) before each search;
        an objective that reads a goal or target shown in the observation keeps them here."""

    def model_view(self, root_obs):
        """The observations the world model is shown at the roots (the search starts from their
        latents): `root_obs` itself by default. An objective that reads part of the observation
        itself (a goal) may show the model that part as training showed it, so an input training
        never varied does not push every latent off what the model learned."""
        return root_obs

    def ends(self, model, out: ModelOutput) -> Optional[torch.Tensor]:
        """[B] bool: states this objective ends the episode in (a target reached), absorbing for
        the search exactly as the model's predicted terminals; None (the default): no others."""
        return None

    # Whether `policy_logits` gives a policy prior of the objective's own (fitted for it), which
    # then stands in for the model's, trained under the old objective.
    has_prior: ClassVar[bool] = False

    def policy_logits(self, model, out: ModelOutput) -> Optional[torch.Tensor]:
        """[B, A]: the objective's own policy prior at out.latent, or None (the model's)."""
        return None

    @classmethod
    def from_spec(cls, spec: dict, discount: Optional[float] = None, context: Optional[Mapping] = None) -> "Objective":
        """Rebuild from `to_spec()`'s dict. `discount` fills in a spec that names none; `context`
        holds what a spec can only name (e.g. an agent's auxiliary value heads)."""
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        if kwargs.get("discount") is None and discount is not None:
            kwargs["discount"] = float(discount)
        return cls(**kwargs)

    @classmethod
    def parse_short(cls, arg: str) -> dict:
        """The spec of the short name 'kind:arg' (e.g. 'reward-only:5'); kinds without one refuse."""
        raise ValueError(f"objective {cls.kind!r} has no short form; give a JSON spec")

    def edge_parts(self, model, parent_latent, action, out) -> dict:
        """The edge reward split into named parts that sum to it (for `explain`); each [B]."""
        return {type(self).__name__: self.edge_reward(model, parent_latent, action, out)}

    def __repr__(self) -> str:
        return self.describe()


class ObjectiveNotRestorable(ValueError):
    """A stored objective used a function with no 'module:attr' reference (e.g. a lambda)."""


@register("learned")
class Learned(Objective):
    """EfficientZero's objective: predicted rewards plus the learned value at the leaf."""

    def __init__(self, discount: Optional[float] = None):
        self._set_discount(discount)

    def edge_reward(self, model, parent_latent, action, out):
        return out.reward

    def leaf_value(self, model, out):
        return out.value

    def describe(self) -> str:
        return f"Learned(discount={self.discount:g}): sum of predicted rewards + learned value at the leaf"

    def to_spec(self) -> dict:
        return {"name": self.kind, "discount": self.discount_for_spec}

    @classmethod
    def parse_short(cls, arg: str) -> dict:
        if arg:
            raise ValueError("'learned' takes no argument")
        return {"name": cls.kind}


@register("reward-only")
class RewardOnly(Objective):
    """Predicted rewards over a fixed horizon; no learned value anywhere in the tree."""

    def __init__(self, horizon: int, discount: Optional[float] = None):
        if int(horizon) < 1:
            raise ValueError(f"RewardOnly needs horizon >= 1, got {horizon!r}")
        self.max_depth = int(horizon)
        self._set_discount(discount)

    def edge_reward(self, model, parent_latent, action, out):
        return out.reward

    def leaf_value(self, model, out):
        return torch.zeros_like(out.reward)

    def describe(self) -> str:
        return (f"RewardOnly(horizon={self.max_depth}, discount={self.discount:g}): "
                f"sum of predicted rewards over at most {self.max_depth} steps, leaf value 0")

    def to_spec(self) -> dict:
        return {"name": self.kind, "horizon": self.max_depth, "discount": self.discount_for_spec}

    @classmethod
    def parse_short(cls, arg: str) -> dict:
        return {"name": cls.kind, "horizon": int(arg)}


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


def anchored_observation(anchor: RootAnchor, model, latent: torch.Tensor, who: str) -> torch.Tensor:
    """`predicted_observation`, anchored at the real root observations when `anchor` is on
    (planners/anchor.py)."""
    decode = lambda z: predicted_observation(model, z, who)  # noqa: E731
    return anchor(model, decode(latent), decode)


def _fn_spec(fn: PluggedFn) -> dict:
    # A function with no importable reference is stored by description only; see _fn_from_spec.
    # "root_obs" records that it reads the roots' observations (detected again when it is loaded).
    return {"ref": fn.ref, "description": fn.name, **({"root_obs": True} if fn.with_root else {})}


def _reads(fn: PluggedFn) -> str:
    """What a function over predicted observations reads, for `describe`."""
    return ("the predicted observation and the real root observation" if fn.with_root
            else "the predicted observation")


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


@register("latent-value")
class LatentValue(Objective):
    """A user network over latents is the value: `module(latent) -> [B]` (or `[B, 1]`).

    By default it is the whole objective (edge rewards 0), so nothing learned for the old goal is
    left in the tree; `with_reward=True` keeps the predicted rewards (EfficientZero's Q with only
    the value swapped).
    """

    def __init__(self, module: Union[torch.nn.Module, str], with_reward: bool = False,
                 discount: Optional[float] = None):
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
        self._set_discount(discount)

    def edge_reward(self, model, parent_latent, action, out):
        return out.reward if self.with_reward else torch.zeros_like(out.reward)

    def leaf_value(self, model, out):
        return self.fn(out.latent)

    def terminal_value(self, model, out):  # a value over states (see Objective)
        return self.leaf_value(model, out)

    def describe(self) -> str:
        reward = "sum of predicted rewards + " if self.with_reward else ""
        return f"LatentValue({self.fn.name}, discount={self.discount:g}): {reward}user network over latents as the value"

    def to_spec(self) -> dict:
        return {"name": self.kind, "module": {"ref": self.ref, "description": self.fn.name},
                "with_reward": self.with_reward, "discount": self.discount_for_spec}

    @classmethod
    def from_spec(cls, spec, discount=None, context=None):
        return cls(_fn_from_spec(spec, "module", "latent value module"), spec.get("with_reward", False),
                   _named_discount(spec, discount))


@register("observation-value")
class ObservationValue(Objective):
    """A user function over predicted observations is the value: `fn(obs[B, ...]) -> [B]`, or
    `fn(obs, root_obs) -> [B]` with the real observation at each tree's root (planners.plugins).

    Needs a model with an observation decoder. Edge rewards are 0 unless `with_reward=True`
    (see LatentValue). `numpy`: see planners.plugins (None: detected on the first call).
    """

    def __init__(self, fn: Union[Callable, str], with_reward: bool = False, discount: Optional[float] = None,
                 numpy: Optional[bool] = None, anchor: bool = True):
        self.fn = PluggedFn(fn, "observation value function", numpy=numpy, root=True)
        self.with_reward = bool(with_reward)
        self.anchor = RootAnchor(anchor)
        self._set_discount(discount)

    def observe(self, root_obs) -> None:
        self.fn.observe(root_obs)
        self.anchor.observe(root_obs)

    def edge_reward(self, model, parent_latent, action, out):
        return out.reward if self.with_reward else torch.zeros_like(out.reward)

    def leaf_value(self, model, out):
        return self.fn(anchored_observation(self.anchor, model, out.latent, f"{type(self).__name__}({self.fn.name})"))

    def terminal_value(self, model, out):  # a value over states (see Objective)
        return self.leaf_value(model, out)

    def describe(self) -> str:
        reward = "sum of predicted rewards + " if self.with_reward else ""
        return (f"ObservationValue({self.fn.name}, discount={self.discount:g}): "
                f"{reward}user function of {_reads(self.fn)} as the value")

    def to_spec(self) -> dict:
        return {"name": self.kind, "fn": _fn_spec(self.fn), "with_reward": self.with_reward,
                "discount": self.discount_for_spec, "anchor": self.anchor.on}

    @classmethod
    def from_spec(cls, spec, discount=None, context=None):
        return cls(_fn_from_spec(spec, "fn", "observation value function"), spec.get("with_reward", False),
                   _named_discount(spec, discount), anchor=spec.get("anchor", True))


@register("observation-reward")
class ObservationReward(Objective):
    """A user function over predicted observations is the reward of reaching them; leaf value 0.

    `fn(obs')` (or `fn(obs', root_obs)`, see ObservationValue) is credited to the transition into
    the predicted observation obs'. No learned value is used, so `horizon` (a tree-depth limit,
    optional) plays RewardOnly's role.
    """

    def __init__(self, fn: Union[Callable, str], horizon: Optional[int] = None,
                 discount: Optional[float] = None, numpy: Optional[bool] = None, anchor: bool = True):
        if horizon is not None and int(horizon) < 1:
            raise ValueError(f"ObservationReward needs horizon >= 1 or None, got {horizon!r}")
        self.fn = PluggedFn(fn, "observation reward function", numpy=numpy, root=True)
        self.max_depth = None if horizon is None else int(horizon)
        self.anchor = RootAnchor(anchor)
        self._set_discount(discount)

    def observe(self, root_obs) -> None:
        self.fn.observe(root_obs)
        self.anchor.observe(root_obs)

    def edge_reward(self, model, parent_latent, action, out):
        return self.fn(anchored_observation(self.anchor, model, out.latent, f"{type(self).__name__}({self.fn.name})"))

    def leaf_value(self, model, out):
        return torch.zeros_like(out.reward)

    def describe(self) -> str:
        horizon = f", horizon={self.max_depth}" if self.max_depth else ""
        root = " (and the real root observation)" if self.fn.with_root else ""
        return (f"ObservationReward({self.fn.name}{horizon}, discount={self.discount:g}): "
                f"sum of a user reward of each predicted observation{root}, leaf value 0")

    def to_spec(self) -> dict:
        return {"name": self.kind, "fn": _fn_spec(self.fn), "horizon": self.max_depth,
                "discount": self.discount_for_spec, "anchor": self.anchor.on}

    @classmethod
    def from_spec(cls, spec, discount=None, context=None):
        return cls(_fn_from_spec(spec, "fn", "observation reward function"), spec.get("horizon"),
                   _named_discount(spec, discount), anchor=spec.get("anchor", True))


@register("pessimistic")
class Pessimistic(Objective):
    """Predicted rewards + (mean - k * std) of the value heads: distrust values the heads dispute.

    std is the population standard deviation over the E heads of `ModelOutput.value_ensemble`.
    """

    def __init__(self, k: float = 1.0, discount: Optional[float] = None):
        if float(k) < 0:
            raise ValueError(f"Pessimistic needs k >= 0, got {k!r}")
        self.k = float(k)
        self._set_discount(discount)

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
        return {"name": self.kind, "k": self.k, "discount": self.discount_for_spec}

    @classmethod
    def parse_short(cls, arg: str) -> dict:
        return {"name": cls.kind, "k": float(arg) if arg else 1.0}


@register("penalized")
class Penalized(Objective):
    """`base` with `weight * penalty(obs')` subtracted from the reward of each transition into obs'.

    The penalty is a user function over predicted observations (needs a decoder), `penalty(obs')`
    or `penalty(obs', root_obs)` (see ObservationValue); discount and depth limit are the base
    objective's.
    """

    def __init__(self, base: Objective, penalty: Union[Callable, str], weight: float = 1.0,
                 numpy: Optional[bool] = None, anchor: bool = True):
        if not isinstance(base, Objective):
            raise ValueError(f"Penalized needs an Objective as its base, got {type(base).__name__}")
        self.base = base
        self.penalty = PluggedFn(penalty, "penalty function", numpy=numpy, root=True)
        self.weight = float(weight)
        # A base over observations anchors the same roots with the same model: share its offset
        # rather than compute it twice per search.
        shared = getattr(base, "anchor", None)
        self._own_anchor = not (isinstance(shared, RootAnchor) and shared.on == bool(anchor))
        self.anchor = RootAnchor(anchor) if self._own_anchor else shared
        self.discount, self.discount_given = base.discount, base.discount_given
        self.max_depth = base.max_depth

    def with_discount(self, discount):  # the base plans at it; this reads the base's
        if self.discount_given or discount is None:
            return self
        bound = copy.copy(self)
        bound.base = self.base.with_discount(discount)
        if not self._own_anchor:
            bound.anchor = bound.base.anchor
        bound.discount, bound.discount_given = bound.base.discount, True
        return bound

    def observe(self, root_obs) -> None:
        self.base.observe(root_obs)
        self.penalty.observe(root_obs)
        if self._own_anchor:  # else the base has just observed it
            self.anchor.observe(self.model_view(root_obs))

    def model_view(self, root_obs):
        return self.base.model_view(root_obs)

    def ends(self, model, out):
        return self.base.ends(model, out)

    def edge_reward(self, model, parent_latent, action, out):
        obs = anchored_observation(self.anchor, model, out.latent, f"Penalized({self.penalty.name})")
        return self.base.edge_reward(model, parent_latent, action, out) - self.weight * self.penalty(obs)

    def leaf_value(self, model, out):
        return self.base.leaf_value(model, out)

    def terminal_value(self, model, out):
        return self.base.terminal_value(model, out)

    def edge_parts(self, model, parent_latent, action, out) -> dict:
        obs = anchored_observation(self.anchor, model, out.latent, f"Penalized({self.penalty.name})")
        return {**self.base.edge_parts(model, parent_latent, action, out),
                f"-{self.weight:g} * {self.penalty.name}": -self.weight * self.penalty(obs)}

    def describe(self) -> str:
        root = ", of the real root observation too" if self.penalty.with_root else ""
        return f"Penalized({self.penalty.name}{root}, weight={self.weight:g}) of [{self.base.describe()}]"

    def to_spec(self) -> dict:
        return {"name": self.kind, "base": self.base.to_spec(), "penalty": _fn_spec(self.penalty),
                "weight": self.weight, "anchor": self.anchor.on}

    @classmethod
    def from_spec(cls, spec, discount=None, context=None):
        return cls(objective_from_spec(spec["base"], discount, context),
                   _fn_from_spec(spec, "penalty", "penalty function"), spec.get("weight", 1.0),
                   anchor=spec.get("anchor", True))


@register("sum")
class Sum(Objective):
    """`base + weight * other`, edge by edge and leaf by leaf: e.g. the training objective plus a
    learned exploration value (agent/explore.py, the visit-count family).

    Planned at the base's discount and depth limit; the other's leaf value counts as it is (a
    value trained at its own discount). What the search sees of the episode (observe, the model's
    view of the roots, ends, the prior) is the base's; `other` observes the roots too.
    """

    def __init__(self, base: Objective, other: Objective, weight: float = 1.0):
        for name, obj in (("base", base), ("other", other)):
            if not isinstance(obj, Objective):
                raise ValueError(f"Sum needs an Objective as its {name}, got {type(obj).__name__}")
        self.base, self.other, self.weight = base, other, float(weight)
        self.discount, self.discount_given = base.discount, base.discount_given
        self.max_depth = base.max_depth

    def with_discount(self, discount):  # both parts plan at it; this reads the base's
        if self.discount_given or discount is None:
            return self
        bound = copy.copy(self)
        bound.base, bound.other = self.base.with_discount(discount), self.other.with_discount(discount)
        bound.discount, bound.discount_given = bound.base.discount, True
        return bound

    def observe(self, root_obs) -> None:
        self.base.observe(root_obs)
        self.other.observe(root_obs)

    def model_view(self, root_obs):
        return self.base.model_view(root_obs)

    def ends(self, model, out):
        return self.base.ends(model, out)

    def edge_reward(self, model, parent_latent, action, out):
        return (self.base.edge_reward(model, parent_latent, action, out)
                + self.weight * self.other.edge_reward(model, parent_latent, action, out))

    def leaf_value(self, model, out):
        return self.base.leaf_value(model, out) + self.weight * self.other.leaf_value(model, out)

    def terminal_value(self, model, out):
        return self.base.terminal_value(model, out) + self.weight * self.other.terminal_value(model, out)

    def edge_parts(self, model, parent_latent, action, out) -> dict:
        other = self.other.edge_parts(model, parent_latent, action, out)
        return {**self.base.edge_parts(model, parent_latent, action, out),
                **{f"{self.weight:g} * {k}": self.weight * v for k, v in other.items()}}

    @property
    def has_prior(self) -> bool:  # type: ignore[override]
        return self.base.has_prior

    def policy_logits(self, model, out):
        return self.base.policy_logits(model, out)

    def describe(self) -> str:
        return f"Sum of [{self.base.describe()}] and {self.weight:g} x [{self.other.describe()}]"

    def to_spec(self) -> dict:
        return {"name": self.kind, "base": self.base.to_spec(), "other": self.other.to_spec(),
                "weight": self.weight}

    @classmethod
    def from_spec(cls, spec, discount=None, context=None):
        return cls(objective_from_spec(spec["base"], discount, context),
                   objective_from_spec(spec["other"], discount, context), spec.get("weight", 1.0))


def spec_discount(spec: dict, default: Optional[float]) -> float:
    """The discount a spec names, else `default`, else DEFAULT_DISCOUNT."""
    g = _named_discount(spec, default)
    return DEFAULT_DISCOUNT if g is None else g


def _named_discount(spec: dict, default: Optional[float]) -> Optional[float]:
    """The discount a spec names (a missing key and None alike name none), else `default`."""
    g = spec.get("discount")
    g = default if g is None else g
    return None if g is None else float(g)


@register("observed-goal-distance")
class ObservedGoalDistance(Objective):
    """Leaf value = minus the L1 distance from a position in the *predicted* observation (decoded
    from the latent, columns `agent_cols`) to a goal read from the *real* observation at the root
    (columns `goal_cols`); edge rewards 0.

    The goal is read from what the agent sees, not from the model: when training never moved the
    goal, nothing learned can know what a moved goal means, while the agent's own position varies
    in training and its prediction can generalize. `observe(obs)` sets the roots' goals before each
    search (row b of every batch the search evaluates is tree b); a batch of another size (the
    one-time validation's dummy batch) falls back to the decoded goal. `horizon` limits the tree's
    depth (None: unlimited).

    `hold_goal` (a value per goal column, or None): the world model is shown the goal columns at
    that value (`model_view`), the goal the training episodes showed, while this objective reads
    the real one. The goal then lives in the objective alone: a model that never saw it move is
    not asked what a moved goal means.
    """

    def __init__(self, agent_cols: Sequence[int] = (0, 1), goal_cols: Sequence[int] = (2, 3),
                 horizon: Optional[int] = None, discount: Optional[float] = None, anchor: bool = True,
                 hold_goal: Optional[Sequence[float]] = None):
        self.agent_cols, self.goal_cols = [int(c) for c in agent_cols], [int(c) for c in goal_cols]
        if len(self.agent_cols) != len(self.goal_cols):
            raise ValueError(f"ObservedGoalDistance needs as many agent_cols as goal_cols, got "
                             f"{self.agent_cols} and {self.goal_cols}")
        self.max_depth = None if horizon is None else int(horizon)
        self._set_discount(discount)
        self.goal: Optional[torch.Tensor] = None
        self.anchor = RootAnchor(anchor)
        self.hold_goal = None if hold_goal is None else [float(v) for v in hold_goal]
        if self.hold_goal is not None and len(self.hold_goal) != len(self.goal_cols):
            raise ValueError(f"ObservedGoalDistance needs one hold_goal value per goal column {self.goal_cols}, "
                             f"got {self.hold_goal}")

    def observe(self, root_obs) -> None:
        obs = root_obs.detach().cpu().numpy() if isinstance(root_obs, torch.Tensor) else np.asarray(root_obs)
        self.goal = torch.as_tensor(obs[:, self.goal_cols], dtype=torch.float32)
        self.anchor.observe(self.model_view(obs))  # the error of what the model is shown

    def model_view(self, root_obs):
        if self.hold_goal is None:
            return root_obs
        view = root_obs.clone() if isinstance(root_obs, torch.Tensor) else np.array(root_obs, copy=True)
        view[:, self.goal_cols] = (torch.as_tensor(self.hold_goal, dtype=view.dtype, device=view.device)
                                   if isinstance(view, torch.Tensor) else np.asarray(self.hold_goal, view.dtype))
        return view

    def edge_reward(self, model, parent_latent, action, out):
        return torch.zeros_like(out.reward)

    def leaf_value(self, model, out):
        pred = anchored_observation(self.anchor, model, out.latent, "ObservedGoalDistance")
        goal = self.goal
        if goal is None or goal.shape[0] != pred.shape[0]:
            goal = pred[:, self.goal_cols]
        return -(pred[:, self.agent_cols] - goal.to(pred.device)).abs().sum(dim=-1)

    def terminal_value(self, model, out):  # a value over states: at the goal and staying there, 0
        return self.leaf_value(model, out)

    def describe(self) -> str:
        horizon = f"horizon={self.max_depth}, " if self.max_depth else ""
        held = f"; the model is shown the goal at {self.hold_goal}" if self.hold_goal is not None else ""
        return (f"ObservedGoalDistance({horizon}discount={self.discount:g}): -|predicted obs{self.agent_cols} "
                f"- observed root obs{self.goal_cols}|_1 as the value, edge rewards 0{held}")

    def to_spec(self) -> dict:
        return {"name": self.kind, "agent_cols": self.agent_cols, "goal_cols": self.goal_cols,
                "horizon": self.max_depth, "discount": self.discount_for_spec, "anchor": self.anchor.on,
                "hold_goal": self.hold_goal}


def short_names() -> str:
    return "a registered kind (" + ", ".join(OBJECTIVES) + "), 'reward-only:H', 'pessimistic:K', or a JSON spec"


def objective_from_spec(spec: Union[str, dict, Objective], discount: Optional[float] = None,
                        context: Optional[Mapping] = None) -> Objective:
    """Build an objective from a short name, a JSON string or a dict made by `to_spec()`.

    Short names are 'kind' or 'kind:arg' for kinds with a short form ('learned', 'reward-only:H',
    'pessimistic:K'). `discount` fills in a spec, or an objective built in Python, that names none
    (the agent passes its own, so `set_objective(ObservationValue(fn))` and a CLI name plan with
    the discount the agent was trained with); `context` is handed to `from_spec` (see Objective).
    """
    if isinstance(spec, Objective):
        return spec.with_discount(discount)
    if isinstance(spec, str):
        text = spec.strip()
        spec = json.loads(text) if text.startswith("{") else _parse_short(text)
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"objective spec must be {short_names()}, or a dict with a 'name'; got {spec!r}")
    cls = OBJECTIVES.get(spec["name"])
    if cls is None:
        raise ValueError(f"unknown objective {spec['name']!r}; known: {', '.join(OBJECTIVES)}")
    return cls.from_spec(spec, discount, context)


def _parse_short(text: str) -> dict:
    name, _, arg = text.partition(":")
    name = name.strip().lower().replace("_", "-")
    cls = OBJECTIVES.get(name)
    if cls is None:
        raise ValueError(f"cannot read objective {text!r}; expected {short_names()}")
    try:
        return cls.parse_short(arg.strip())
    except ValueError as e:
        raise ValueError(f"cannot read objective {text!r} ({e}); expected {short_names()}") from None
