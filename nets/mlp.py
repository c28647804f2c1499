"""MLP family (vector observations) and the heads both families share.

Shared pieces: `mlp` (the layer builder), `LatentNorm`, `RewardHead` (per-step reward or the
value-prefix LSTM), `ValueHeads` (an ensemble of independent value heads), `ConsistencyProjection`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nets.config import NetConfig
from nets.support import num_bins


def mlp(in_features: int, hidden: Sequence[int], out_features: int) -> nn.Sequential:
    """Linear -> ReLU for each hidden width, then a linear output layer."""
    layers, width = [], in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class LatentNorm(nn.Module):
    """Per-sample normalization of a latent over all its non-batch dimensions.

    "minmax" is EfficientZero's scaling to [0, 1]: it bounds the latent so that repeated dynamics
    steps cannot drift it to ever larger magnitudes. "layernorm" (no affine parameters, the MLP
    default: see NetConfig.latent_norm) bounds it to zero mean and unit variance instead. Neither has parameters or state, so a latent means the
    same thing whatever batch it is computed in.
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        if self.kind == "layernorm":
            return F.layer_norm(flat, flat.shape[1:]).view_as(x)
        low = flat.min(dim=1, keepdim=True).values
        scale = flat.max(dim=1, keepdim=True).values - low
        # A constant latent has no range; EfficientZero's guard against dividing by ~0.
        scale = torch.where(scale < 1e-5, scale + 1e-5, scale)
        return ((flat - low) / scale).view_as(x)

    def extra_repr(self) -> str:
        return self.kind


class RewardHead(nn.Module):
    """Reward logits from dynamics features: per-step by default, or EfficientZero's value prefix.

    With `lstm_hidden` set, an LSTM step turns (features, state) into logits of the *value prefix*
    (the sum of rewards since the state was last reset) and a new state. The state is a plain
    tensor [B, 2 * lstm_hidden] (h and c side by side) so it can be indexed and stored like a
    latent; zeros mean "reset". Without the LSTM the state is always None.
    """

    def __init__(self, in_features: int, hidden: int, support_size: int, lstm_hidden: Optional[int]):
        super().__init__()
        self.lstm_hidden = lstm_hidden
        self.lstm = nn.LSTM(in_features, lstm_hidden, batch_first=True) if lstm_hidden else None
        self.out = mlp(lstm_hidden or in_features, (hidden,), num_bins(support_size))

    @property
    def state_size(self) -> int:
        return 2 * self.lstm_hidden if self.lstm is not None else 0

    def forward(self, features: torch.Tensor, state: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self.lstm is None:
            return self.out(features), None
        if state is None:
            state = features.new_zeros(features.shape[0], self.state_size)
        h, c = state.unsqueeze(0).chunk(2, dim=-1)
        y, (h, c) = self.lstm(features.unsqueeze(1), (h.contiguous(), c.contiguous()))
        return self.out(F.relu(y.squeeze(1))), torch.cat([h, c], dim=-1).squeeze(0)


class ValueHeads(nn.Module):
    """E independent value heads, logits [B, E, S].

    Independent hidden layers (not one shared layer with E outputs) so the heads disagree away from
    the training data, which is what a pessimistic (mean - k std) objective reads.
    """

    def __init__(self, in_features: int, hidden: int, support_size: int, num_heads: int):
        super().__init__()
        self.heads = nn.ModuleList(mlp(in_features, (hidden,), num_bins(support_size))
                                   for _ in range(num_heads))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(features) for head in self.heads], dim=1)


class ConsistencyProjection(nn.Module):
    """EfficientZero's SimSiam branch: projection g, and prediction head q on the online side.

    The learner compares q(g(predicted latent)) with stop-grad g(latent of the real next
    observation). LayerNorm instead of EfficientZero's BatchNorm: no batch statistics, so the
    result does not depend on what else is in the batch.
    """

    def __init__(self, in_features: int, hidden: int, out: int, head_hidden: int):
        super().__init__()
        self.projection = nn.Sequential(
            nn.Linear(in_features, hidden), nn.LayerNorm(hidden), nn.ReLU(),
            nn.Linear(hidden, out), nn.LayerNorm(out))
        self.head = nn.Sequential(
            nn.Linear(out, head_hidden), nn.LayerNorm(head_hidden), nn.ReLU(),
            nn.Linear(head_hidden, out))

    def forward(self, latent: torch.Tensor, with_grad: bool) -> torch.Tensor:
        if with_grad:
            return self.head(self.projection(latent.flatten(1)))
        with torch.no_grad():
            return self.projection(latent.flatten(1)).detach()


class MLPRepresentation(nn.Module):
    def __init__(self, obs_shape: Tuple[int, ...], config: NetConfig):
        super().__init__()
        self.net = mlp(math.prod(obs_shape), config.hidden, config.latent_dim)
        self.norm = LatentNorm(config.latent_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.norm(self.net(obs.float().flatten(1)))


class MLPDynamics(nn.Module):
    """(latent, one-hot action) -> next latent, plus reward logits for that transition."""

    def __init__(self, num_actions: int, config: NetConfig):
        super().__init__()
        self.num_actions = num_actions
        self.net = mlp(config.latent_dim + num_actions, config.hidden, config.latent_dim)
        self.norm = LatentNorm(config.latent_norm)
        self.reward = RewardHead(config.latent_dim, config.hidden[-1], config.reward_support_size,
                                 config.lstm_hidden if config.value_prefix_lstm else None)

    def forward(self, latent: torch.Tensor, action: torch.Tensor, reward_state: Optional[torch.Tensor]):
        onehot = F.one_hot(action, self.num_actions).to(latent.dtype)
        next_latent = self.norm(self.net(torch.cat([latent, onehot], dim=1)))
        reward_logits, reward_state = self.reward(next_latent, reward_state)
        return next_latent, reward_logits, reward_state


class MLPPrediction(nn.Module):
    """latent -> (policy logits [B, A], value logits [B, E, S], terminal logits [B] or None).

    The terminal head (NetConfig.terminal_head) is a head of its own, like each value head, and is
    part of the prediction network: the capacity budget counts it."""

    def __init__(self, num_actions: int, config: NetConfig):
        super().__init__()
        width = config.hidden[-1]
        self.policy = mlp(config.latent_dim, (width,), num_actions)
        self.value = ValueHeads(config.latent_dim, width, config.value_support_size, config.num_value_heads)
        self.terminal = mlp(config.latent_dim, (width,), 1) if config.terminal_head else None

    def forward(self, latent: torch.Tensor):
        terminal = self.terminal(latent).squeeze(-1) if self.terminal is not None else None
        return self.policy(latent), self.value(latent), terminal


class MLPDecoder(nn.Module):
    """latent -> predicted observation, mirroring the representation's widths."""

    def __init__(self, obs_shape: Tuple[int, ...], config: NetConfig):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.net = mlp(config.latent_dim, tuple(reversed(config.hidden)), math.prod(obs_shape))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent).view(-1, *self.obs_shape)
