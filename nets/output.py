"""The one return type of every model call: tensors on the model's device, always."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class ModelOutput:
    """What `initial_inference` and `recurrent_inference` return, batched over B.

    Scalars (`reward`, `value`) are already decoded from their categorical supports; the logits
    are kept for the training losses. Optional fields are `None` when a model does not make them.
    """

    latent: torch.Tensor  # [B, *latent_shape]
    reward: torch.Tensor  # [B] reward predicted for the transition into `latent` (0 at the root)
    value: torch.Tensor  # [B] mean of the value heads
    policy_logits: torch.Tensor  # [B, A]
    reward_logits: Optional[torch.Tensor] = None  # [B, S]
    value_logits: Optional[torch.Tensor] = None  # [B, E, S] (E value heads, 1 by default)
    value_ensemble: Optional[torch.Tensor] = None  # [B, E] decoded value of each head
    # Exact (test) models and models with a terminal head (NetConfig.terminal_head) only.
    terminal: Optional[torch.Tensor] = None  # [B] bool: no transition leaves this state
    terminal_logit: Optional[torch.Tensor] = None  # [B] the terminal head's logit (for the loss)
    # Exact (test) models only: learned latents have no action mask.
    action_mask: Optional[torch.Tensor] = None  # [B, A] bool: legal actions in this state
    # Value-prefix LSTM models only (NetConfig.value_prefix_lstm): the state to pass to the next
    # `recurrent_inference` from this node; None elsewhere. See nets/model.py.
    reward_state: Optional[torch.Tensor] = None  # [B, D]

    @property
    def batch_size(self) -> int:
        return self.latent.shape[0]
