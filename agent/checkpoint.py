"""Checkpoint files: data only, written atomically (temp file, fsync, rename), read with clear errors.

A checkpoint holds tensors, numbers, strings, lists, tuples and dicts, nothing else: numpy arrays
are stored as tensors (tagged so they come back as arrays), and files are read with
`torch.load(weights_only=True)`, which refuses anything that would run code while loading. A
checkpoint from an untrusted source is therefore safe to open.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.files import atomic_path

FORMAT = "glasszero-checkpoint-v1"
_ARRAY = "__ndarray__"  # {"__ndarray__": tensor}: a numpy array stored as a tensor


def to_data(obj: Any) -> Any:
    """`obj` with numpy arrays and scalars turned into tagged tensors and plain numbers; refuses
    anything that is not data, naming where it sits."""
    return _convert(obj, "payload")


def _convert(obj, where: str):
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"checkpoint {where}: an object array cannot be stored as data")
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _convert(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_convert(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    raise TypeError(f"checkpoint {where}: {type(obj).__name__} is not data (tensors, arrays, numbers, "
                    f"strings, lists, tuples, dicts)")


def from_data(obj: Any) -> Any:
    """The inverse of `to_data`: tagged tensors back to numpy arrays."""
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY}:
            return obj[_ARRAY].numpy()
        return {k: from_data(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_data(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(from_data(v) for v in obj)
    return obj


def atomic_save(payload: dict, path: str | os.PathLike) -> Path:
    """torch.save `payload` (data only, see the module doc) so that a crash never leaves a
    half-written file at `path`."""
    data = to_data({"format": FORMAT, **payload})
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return Path(path)


def load(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint written by `atomic_save`; missing, corrupt, foreign or code-carrying files
    raise a clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}. Pass the model.pt written by a training run "
                                f"(e.g. runs/ez_CartPole-v1_s0/model.pt) or its run directory.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"Checkpoint {path} holds objects other than data (tensors, numbers, strings, lists, "
                         f"dicts), which could run code when loaded; refusing to open it. Only load "
                         f"checkpoints written by glasszero.") from e
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise ValueError(f"Checkpoint {path} is corrupt or not a torch file ({type(e).__name__}: {e}). "
                         f"Retrain, or point at an intact checkpoint.") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a glasszero checkpoint (expected format {FORMAT!r}).")
    return from_data(payload)
