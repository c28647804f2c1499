"""Auxiliary value heads: values of other reward functions, learned beside the agent, plugged in as
objectives with no retraining (`train.py --aux-value NAME --aux-reward module:fn`).

Each head is a small network over the agent's latents, fitted to n-step returns of
fn(obs, action, reward, next_obs, terminated) -> [B] on the same replay (the rewards are stored
beside each transition by self-play). The heads read detached latents and have an optimizer of
their own, so they never change the agent's networks. `aux:NAME` names the objective a head
makes (an AuxValue, a value over latents), in specs, on the command line and in checkpoints.

The learner calls four hooks: `targets` (with the batch), `losses` (with the unroll's latents),
`zero_grad` and `step` (around its own backward pass).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from common.imports import load_callable
from nets.support import inverse_scalar_transform, scalar_transform
from planners.objectives import DEFAULT_DISCOUNT, Objective, register, spec_discount

PREFIX = "aux:"


class AuxValueHead(torch.nn.Module):
    """`forward(latent) -> [B]`: the value in the reward's own units (fitted in h(x)-space, with
    EfficientZero's value transform, by a squared error)."""

    def __init__(self, latent_dim: int, hidden: int = 64):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(latent_dim), int(hidden)),
                                       torch.nn.ReLU(), torch.nn.Linear(int(hidden), 1))

    def transformed(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent).squeeze(-1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return inverse_scalar_transform(self.transformed(latent))


@register("aux")
class AuxValue(Objective):
    """The value an auxiliary head predicts over latents; edge rewards 0 unless `with_reward`
    (then the learned predicted rewards). Built from a spec through the agent's heads (`context`)."""

    def __init__(self, head_name: str, head: torch.nn.Module, with_reward: bool = False,
                 discount: float = DEFAULT_DISCOUNT):
        self.head_name, self.head = head_name, head
        self.with_reward, self.discount = bool(with_reward), float(discount)

    @classmethod
    def from_spec(cls, spec, discount=None, context=None):
        heads = (context or {}).get("aux_heads", {})
        name = spec["head"]
        if name not in heads:
            raise ValueError(f"objective {PREFIX}{name}: this agent has no auxiliary value head of that name "
                             f"(it has: {', '.join(heads) or 'none'}; train one with train.py --aux-value "
                             f"NAME --aux-reward module:fn)")
        return cls(name, heads[name], spec.get("with_reward", False), spec_discount(spec, discount))

    @classmethod
    def parse_short(cls, arg: str) -> dict:
        if not arg:
            raise ValueError("'aux' needs a head name: aux:NAME")
        return {"name": cls.kind, "head": arg}

    def edge_reward(self, model, parent_latent, action, out):
        return out.reward if self.with_reward else torch.zeros_like(out.reward)

    def leaf_value(self, model, out):
        return self.head(out.latent)

    def describe(self) -> str:
        reward = "sum of predicted rewards + " if self.with_reward else ""
        return f"{PREFIX}{self.head_name} (discount={self.discount:g}): {reward}auxiliary value head over latents"

    def to_spec(self) -> dict:
        return {"name": self.kind, "head": self.head_name, "with_reward": self.with_reward,
                "discount": self.discount}


def parse_name(objective) -> Optional[dict]:
    """'aux:NAME' -> the AuxValue spec; anything else -> None."""
    if isinstance(objective, str) and objective.startswith(PREFIX):
        return AuxValue.parse_short(objective[len(PREFIX):])
    return None


class AuxValues:
    """The heads of `specs` ([[NAME, 'module:fn'], ...]), their optimizer and their reward functions.

    `internal` maps the names of heads whose rewards self-play computes itself (the visit-count
    explorers' bonus, agent/explore.py) to the discount of their returns: their replay columns
    follow the specs' and they fit every known state, whoever acted in it, where a user's head
    fits the states the value does, at the agent's discount.
    """

    def __init__(self, specs: Sequence[Sequence[str]], latent_dim: int, hidden: int, lr: float,
                 device: torch.device, internal: Optional[Dict[str, float]] = None):
        self.specs = [list(s) for s in specs]
        self.internal = dict(internal or {})
        self.heads = torch.nn.ModuleDict({name: AuxValueHead(latent_dim, hidden) for name in self.names})
        self.heads.to(device)
        self.optimizer = torch.optim.Adam(self.heads.parameters(), lr=lr)
        self._rewards: Optional[List[Callable]] = None

    @property
    def names(self) -> List[str]:
        """Every head, in the order of their replay columns."""
        return [name for name, _ in self.specs] + list(self.internal)

    # ---------------------------------------------------------------- self-play
    def rewards(self, obs, action, reward, next_obs, terminated) -> np.ndarray:
        """[B, len(specs)]: every user function's reward of one batch of real transitions, checked
        (the internal heads' columns are their owner's to append)."""
        if self._rewards is None:  # loaded on first use: acting needs no reward functions
            self._rewards = [load_callable(ref, f"aux reward function of --aux-value {name}")
                             for name, ref in self.specs]
        columns = [_checked(name, fn, obs, action, reward, next_obs, terminated)
                   for (name, _), fn in zip(self.specs, self._rewards)]
        return np.stack(columns, axis=1) if columns else np.zeros((len(action), 0), np.float32)

    # ---------------------------------------------------------------- learner hooks
    def targets(self, value_targets: Callable, replay, encode: Callable) -> Dict[str, np.ndarray]:
        """NAME -> [B, K+1] n-step returns of that aux reward; `value_targets(rewards, bootstrap,
        [discount])` is the learner's target builder, `encode(obs) -> latents` the online
        representation."""
        out = {}
        for j, (name, head) in enumerate(self.heads.items()):
            own = {"discount": self.internal[name]} if name in self.internal else {}
            with torch.no_grad():
                out[name] = value_targets(replay.aux_reward[:, j],
                                          lambda obs, head=head: head(encode(obs)).cpu().numpy(), **own)
        return out

    def losses(self, latents: Sequence[torch.Tensor], targets: Dict[str, torch.Tensor],
               value_mask: torch.Tensor, state_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """'aux_NAME' -> [B] squared error in h(x)-space along the unroll, on detached latents, where
        `value_mask` [B, K+1] holds (`state_mask`, every known state, for the internal heads)."""
        state_mask = value_mask if state_mask is None else state_mask
        K = len(latents) - 1
        out = {}
        for name, head in self.heads.items():
            mask = state_mask if name in self.internal else value_mask
            loss = 0.0
            for k, z in enumerate(latents):
                err = (head.transformed(z.detach()) - scalar_transform(targets[name][:, k])) ** 2
                loss = loss + err * mask[:, k] / (1 if k == 0 else K)
            out[f"aux_{name}"] = loss
        return out

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, lr: float, max_grad_norm: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.nn.utils.clip_grad_norm_(self.heads.parameters(), max_grad_norm)
        self.optimizer.step()

    # ---------------------------------------------------------------- objectives and checkpoints
    def objectives(self, discount: float) -> Dict[str, Objective]:
        """'aux:NAME' -> the objective of each head."""
        return {f"{PREFIX}{name}": AuxValue(name, head, discount=self.internal.get(name, discount))
                for name, head in self.heads.items()}

    def state_dict(self) -> dict:
        return {"heads": self.heads.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict, with_optimizer: bool = True) -> None:
        self.heads.load_state_dict(state["heads"])
        if with_optimizer and state.get("optimizer"):
            self.optimizer.load_state_dict(state["optimizer"])


def _checked(name: str, fn: Callable, obs, action, reward, next_obs, terminated) -> np.ndarray:
    """fn's rewards for one batch of B transitions, checked: float, shape [B], finite."""
    B = len(action)
    try:
        out = np.asarray(fn(obs, action, reward, next_obs, terminated), dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - re-raised with the function named
        raise ValueError(f"aux reward function of --aux-value {name} raised {type(e).__name__}: {e} "
                         f"(it gets batched numpy arrays obs [B, ...], action [B], reward [B], next_obs "
                         f"[B, ...], terminated [B] and must return [B] floats)") from e
    if out.shape == (B, 1):
        out = out[:, 0]
    if out.shape != (B,):
        raise ValueError(f"aux reward function of --aux-value {name} returned shape {out.shape} for a batch "
                         f"of {B} transitions; it must return one float per transition, shape ({B},)")
    if not np.isfinite(out).all():
        raise ValueError(f"aux reward function of --aux-value {name} returned NaN or inf: {out.tolist()}")
    return out
