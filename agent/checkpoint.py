"""Checkpoint files: written atomically (temp file, fsync, rename), read with clear errors."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

FORMAT = "glasszero-checkpoint-v1"


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; once the block has written it, fsync it and rename it
    onto `path`, so that a crash never leaves a half-written file there (the temp file is removed
    on any error)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
