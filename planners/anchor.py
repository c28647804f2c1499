"""Predicted observations anchored at the real one: the model's decoding error at each tree's root
taken out of every prediction in that tree.

    anchored(z) = decode(z) + (o_root - decode(h(o_root)))        row b: tree b

An objective over predicted observations reads where the model says the agent will be. When the
real observation holds something training never varied (a goal moved at test time, an entry held
constant), the representation mixes it into every latent and the decoded positions come out
shifted, already at the root, by the same amount all through the tree. The root's real observation
is known, so that shift is measured once per search and subtracted, as offset-free model predictive
control subtracts a measured disturbance from a model's forecasts. Off, predictions are decoded as
they are.

Only real-valued observations are anchored. Integer observations (MiniGrid's grid codes, Atari's
pixels) are categories or pixels: an additive offset has no meaning there (on the transfer suite's
MiniGrid development objectives it moved the decoded agent to other cells), so they are read as
decoded.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch


class RootAnchor:
    """The offset of one search's roots (set by `observe`, computed on first use with the model the
    search runs); a batch whose rows are not the roots' (a validation batch) is left as decoded."""

    def __init__(self, on: bool = True):
        self.on = bool(on)
        self.raw = None  # [B, *obs] the roots' real observations as the search got them
        self.root: Optional[torch.Tensor] = None  # the same as float32
        self.offset: Optional[torch.Tensor] = None

    def observe(self, root_obs) -> None:
        self.raw, self.root, self.offset = None, None, None
        raw = root_obs.detach().cpu().numpy() if isinstance(root_obs, torch.Tensor) else np.asarray(root_obs)
        if self.on and np.issubdtype(raw.dtype, np.floating):
            self.raw, self.root = raw, torch.as_tensor(raw, dtype=torch.float32)

    def __call__(self, model, predicted: torch.Tensor, decode: Callable) -> torch.Tensor:
        """`predicted` ([B, *obs], decoded) anchored at the roots; `decode(latent)` is the decoder
        the objective reads through (its missing-decoder error included)."""
        if not self.on or self.root is None or self.root.shape != predicted.shape:
            return predicted
        if self.offset is None:
            root = self.root.to(predicted.device)
            with torch.no_grad():
                self.offset = root - decode(model.initial_inference(self.raw).latent)
        return predicted + self.offset
