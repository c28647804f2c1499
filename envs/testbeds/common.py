"""Pieces the testbeds share: the split keyword and a tiny numpy renderer for grid worlds."""
from __future__ import annotations

from typing import Optional

import numpy as np

SPLITS = ("train", "test")
RENDER_MODES = (None, "rgb_array")
CELL = 8  # pixels per grid cell: images stay small enough to log every step


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def check_render_mode(render_mode: Optional[str]) -> Optional[str]:
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    return render_mode


def grid_image(rows: int, cols: int, cells: list) -> np.ndarray:
    """A (rows*CELL, cols*CELL, 3) uint8 image; `cells` lists ((row, col), rgb, inset) painted in order."""
    img = np.full((rows * CELL, cols * CELL, 3), 40, np.uint8)
    img[::CELL, :] = img[:, ::CELL] = 70  # faint grid lines
    for (r, c), rgb, inset in cells:
        img[r * CELL + inset:(r + 1) * CELL - inset, c * CELL + inset:(c + 1) * CELL - inset] = rgb
    return img
