"""Checkpoint files: written atomically (temp file, fsync, rename), read with clear errors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from common.files import atomic_path

FORMAT = "glasszero-checkpoint-v1"


def atomic_save(payload: dict, path: str | os.PathLike) -> Path:
    """torch.save `payload` to `path` so that a crash never leaves a half-written file there."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    return Path(path)


def load(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint written by `atomic_save`; missing or corrupt files raise a clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}. Pass the model.pt written by a training run "
                                f"(e.g. runs/ez_CartPole-v1_s0/model.pt) or its run directory.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise ValueError(f"Checkpoint {path} is corrupt or not a torch file ({type(e).__name__}: {e}). "
                         f"Retrain, or point at an intact checkpoint.") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a glasszero checkpoint (expected format {FORMAT!r}).")
    return payload
