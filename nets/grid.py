"""Grid observations of small integers (MiniGrid: [W, H, 3] of object, color, state; NetConfig.grid_values).

`GridOneHot` is the networks' input: each channel one-hot over the values it takes, so that an
object index is a category, not a magnitude (lava = 9 is not "more" than a door = 4).
`GridDecoder` predicts each channel of each cell as a categorical: its loss is the cross-entropy,
and `decode` returns the most likely value of each, a predicted grid in the observation's own
integers, so that one function reads real and predicted grids alike (envs/tasks.py's MiniGrid
tasks do). Regression on scaled values was the alternative; it would return 8.5 between a goal
and lava, which no objective over cell contents can read.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nets.mlp import mlp


def encoded_shape(obs_shape: Tuple[int, ...], grid_values: Sequence[int], family: str) -> Tuple[int, ...]:
    """The shape the networks after GridOneHot see: [sum(values), W, H] for conv, flat for MLP."""
    *cells, _ = obs_shape
    total = int(sum(grid_values))
    return (total, *cells) if family == "conv" else (math.prod(cells) * total,)


def check_grid_shape(obs_shape: Tuple[int, ...], grid_values: Sequence[int]) -> None:
    if len(obs_shape) != 3 or obs_shape[-1] != len(grid_values):
        raise ValueError(f"net.grid_values={list(grid_values)} describes grid observations [W, H, "
                         f"{len(grid_values)}] (one entry per channel), but the observation has shape {obs_shape}; "
                         f"unset net.grid_values for this environment")


class GridOneHot(nn.Module):
    """[B, W, H, C] integers -> one-hot [B, sum(values), W, H] (channels_first) or [B, W*H*sum]."""

    def __init__(self, grid_values: Sequence[int], channels_first: bool):
        super().__init__()
        self.grid_values = tuple(int(v) for v in grid_values)
        self.channels_first = channels_first
        self.register_buffer("limit", torch.tensor(self.grid_values), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.long()
        # Checked wherever an observation first arrives; a compiled learner reads replay, whose
        # observations passed this check when they were played.
        bad = None if torch.compiler.is_compiling() else (x < 0) | (x >= self.limit)
        if bad is not None and bool(bad.any()):
            c = int(torch.nonzero(bad)[0, -1])
            raise ValueError(f"a grid observation holds {int(x[bad][0])} in channel {c}, outside 0..{self.grid_values[c] - 1} "
                             f"(net.grid_values={list(self.grid_values)}): the environment's grid does not match the setting")
        onehot = torch.cat([F.one_hot(x[..., c], n) for c, n in enumerate(self.grid_values)], dim=-1).float()
        return onehot.permute(0, 3, 1, 2) if self.channels_first else onehot.flatten(1)


class GridDecoder(nn.Module):
    """latent -> logits [B, W, H, sum(values)]; an MLP over the flattened latent for both families
    (a 7x7 grid is small enough that a spatial decoder buys nothing measurable here)."""

    def __init__(self, obs_shape: Tuple[int, ...], latent_size: int, hidden: Sequence[int],
                 grid_values: Sequence[int]):
        super().__init__()
        self.cells = tuple(obs_shape[:-1])
        self.grid_values = tuple(int(v) for v in grid_values)
        self.net = mlp(latent_size, tuple(hidden), math.prod(self.cells) * sum(self.grid_values))

    def logits(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent.flatten(1)).view(-1, *self.cells, sum(self.grid_values))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """The most likely value of each channel of each cell: [B, W, H, C] floats of integers."""
        parts = self.logits(latent).split(self.grid_values, dim=-1)
        return torch.stack([p.argmax(dim=-1) for p in parts], dim=-1).float()

    def loss(self, latent: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Cross-entropy per channel, summed over channels, averaged over cells: [B]."""
        parts = self.logits(latent).split(self.grid_values, dim=-1)
        target = obs.long()
        total = 0.0
        for c, p in enumerate(parts):
            total = total + F.cross_entropy(p.flatten(0, -2), target[..., c].flatten(), reduction="none")
        return total.view(latent.shape[0], -1).mean(dim=1)
