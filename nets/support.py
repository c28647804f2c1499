"""Scalars <-> categorical distributions over an integer support, as in MuZero / EfficientZero.

Values and rewards are predicted as distributions over the integers -S..S (2S+1 bins; spaced
`step` apart when NetConfig.support_step is not 1) of the *transformed* scalar h(x). The transform
squashes large returns so one support covers them, and cross-entropy against a two-hot target
trains far more stably than a squared error on x.

What the learner needs:
    scalar_to_support(x, S[, step])  targets: two-hot of h(x), shape [..., 2S+1]
    support_cross_entropy(logits, p) loss:    -sum p * log_softmax(logits), shape [...]
    support_to_scalar(logits)        decode:  expectation over bins, then h^-1
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# EfficientZero's epsilon: the small linear term keeps h invertible and Lipschitz at large |x|.
TRANSFORM_EPS = 0.001


def scalar_transform(x: torch.Tensor, eps: float = TRANSFORM_EPS) -> torch.Tensor:
    """h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x."""
    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1) - 1) + eps * x


def inverse_scalar_transform(y: torch.Tensor, eps: float = TRANSFORM_EPS) -> torch.Tensor:
    """Closed-form h^-1(y) = sign(y) (((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1)."""
    root = (torch.sqrt(1 + 4 * eps * (torch.abs(y) + 1 + eps)) - 1) / (2 * eps)
    return torch.sign(y) * (root * root - 1)


def num_bins(support_size: int) -> int:
    return 2 * support_size + 1


def support_size_of(logits: torch.Tensor) -> int:
    """S from a [..., 2S+1] tensor; refuses an even bin count (no bin at 0)."""
    n = logits.shape[-1]
    if n % 2 == 0:
        raise ValueError(f"a support has 2S+1 bins (odd), got a last dimension of {n}")
    return (n - 1) // 2


def scalar_to_support(x: torch.Tensor, support_size: int, step: float = 1.0) -> torch.Tensor:
    """Two-hot encoding of h(x) over the bins step * (-S..S): shape [*x.shape, 2S+1], rows sum to 1.

    h(x) is clamped to [-S, S] steps first, so returns beyond h^-1(step * S) are encoded as the edge bin.
    """
    y = (scalar_transform(x) / step).clamp(-support_size, support_size)
    low = torch.floor(y)
    upper_weight = y - low
    low_index = (low + support_size).long()
    # At y == S the upper bin would be 2S+1 (out of range); its weight is 0 there, so clamp it.
    high_index = (low_index + 1).clamp(max=2 * support_size)
    probs = torch.zeros(*x.shape, num_bins(support_size), dtype=y.dtype, device=x.device)
    probs.scatter_add_(-1, low_index.unsqueeze(-1), (1 - upper_weight).unsqueeze(-1))
    probs.scatter_add_(-1, high_index.unsqueeze(-1), upper_weight.unsqueeze(-1))
    return probs


def probs_to_scalar(probs: torch.Tensor, step: float = 1.0) -> torch.Tensor:
    """Expectation of a distribution over step * (-S..S) in transformed space, mapped back with h^-1."""
    support_size = support_size_of(probs)
    bins = torch.arange(-support_size, support_size + 1, dtype=probs.dtype, device=probs.device)
    return inverse_scalar_transform(step * (probs * bins).sum(-1))


def support_to_scalar(logits: torch.Tensor, step: float = 1.0) -> torch.Tensor:
    """Decode categorical logits [..., 2S+1] (bins step * (-S..S)) to scalars [...]."""
    return probs_to_scalar(torch.softmax(logits, dim=-1), step)


def support_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per row, shape [...]; targets are usually `scalar_to_support(...)`."""
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1)
