"""Preallocated buffers of one search: the latent pool on the model's device and the packed host
array of the scalars the kernels read.

On the CPU both are numpy views of torch memory, so a simulation moves no data it does not have
to; on a GPU the latents stay resident and only the packed scalars cross to the host.
"""
from __future__ import annotations

import numpy as np
import torch

from nets.output import ModelOutput
from planners import kernels


def on_host(device: torch.device) -> bool:
    """Whether tensors on `device` share memory with numpy arrays (the CPU): then the selection,
    the latent pool and the packed buffer are used in place, with no copies (tests turn this off
    to run the device path on the CPU)."""
    return device.type == "cpu"


class LatentPool:
    """Per-node tensors of B trees (latents, reward states) on the model's device, flattened to
    [B * N, ...] so that one gather / scatter moves the rows of all trees; row b * N + node holds
    node `node` of tree b (the select kernel writes these flat indices). On the CPU the rows move
    through a numpy view of the same memory, which is several times faster than index_select /
    index_copy_ for small rows."""

    def __init__(self, root: torch.Tensor, batch_size: int, num_nodes: int):
        shape = tuple(root.shape[1:])
        # Uninitialized: a slot is written (its node created) before it is ever read.
        self.pool = root.new_empty((batch_size * num_nodes,) + shape)
        self.pool.view((batch_size, num_nodes) + shape)[:, 0] = root
        self.array = self.pool.numpy() if on_host(root.device) else None

    def gather(self, index: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        if self.array is None:
            return self.pool.index_select(0, index)
        return torch.from_numpy(self.array.take(rows, axis=0))

    def scatter(self, index: torch.Tensor, rows: np.ndarray, values: torch.Tensor) -> None:
        if self.array is None:
            self.pool.index_copy_(0, index, values)
        else:
            self.array[rows] = values.numpy()


class OutputPacker:
    """One preallocated host buffer [B, 3 + 2A] (float64) of everything the kernels need from a
    model step: edge reward, leaf value, policy logits, terminal flag, action mask (kernels.COL_*).
    `pack` fills it in place from the model's device (one copy to the host per step off the CPU)
    and returns the terminal and mask columns (-1 where the model gave none)."""

    def __init__(self, batch_size: int, num_actions: int, device: torch.device):
        A = num_actions
        self.batch_size = batch_size
        self.host = np.zeros((batch_size, 3 + 2 * A), np.float64)
        host = torch.from_numpy(self.host)
        self.on_host = on_host(device)
        self.dev = host if self.on_host else torch.zeros(host.shape, dtype=host.dtype, device=device)
        self.host_tensor = host
        self.reward = self.dev[:, kernels.COL_REWARD]
        self.value = self.dev[:, kernels.COL_VALUE]
        self.logits = self.dev[:, kernels.COL_LOGITS:kernels.COL_LOGITS + A]
        self.terminal_column = kernels.COL_LOGITS + A
        self.mask_column = self.terminal_column + 1
        self.terminal = self.dev[:, self.terminal_column]
        self.mask = self.dev[:, self.mask_column:]

    def pack(self, reward, value, out: ModelOutput, objective):
        B = self.batch_size
        check_scalars(reward, "edge_reward", objective, B)
        check_scalars(value, "leaf_value", objective, B)
        self.reward.copy_(reward)
        self.value.copy_(value)
        self.logits.copy_(out.policy_logits)
        terminal_column = mask_column = -1
        if out.terminal is not None:
            self.terminal.copy_(out.terminal)
            terminal_column = self.terminal_column
        if out.action_mask is not None:
            self.mask.copy_(out.action_mask)
            mask_column = self.mask_column
        if not self.on_host:
            self.host_tensor.copy_(self.dev)
        return terminal_column, mask_column


def check_scalars(x, what: str, objective, batch_size: int) -> None:
    """Refuse, naming the objective and its method `what`, an output that is not a tensor [B]."""
    if type(x) is torch.Tensor and x.shape == (batch_size,):
        return
    shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
    raise ValueError(f"objective {objective.describe()!r}: {what} must return a tensor of shape "
                     f"({batch_size},), got {shape}")
