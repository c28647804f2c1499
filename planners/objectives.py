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
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import torch

from nets.output import ModelOutput


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

    def __repr__(self) -> str:
        return self.describe()


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
