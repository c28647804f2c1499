"""Refusing out-of-range numbers given on the command line (or to the same-named Python arguments)
early, with a message that names the flag, instead of failing later or, worse, running anyway."""
from __future__ import annotations

from typing import List


def at_least(flag: str, value, low) -> None:
    """ValueError naming `flag` unless value >= low."""
    if not value >= low:
        raise ValueError(f"{flag} must be >= {low}, got {value}")


def positive(flag: str, value) -> None:
    """ValueError naming `flag` unless value > 0 (NaN is refused too)."""
    if not value > 0:
        raise ValueError(f"{flag} must be > 0, got {value}")


def non_negative_seed(flag: str, value: int) -> None:
    """ValueError naming `flag` for a negative seed (numpy's generators refuse them, far later)."""
    if value < 0:
        raise ValueError(f"{flag} must be >= 0 (numpy's random generators take non-negative seeds), got {value}")


def parse_seeds(text: str, flag: str = "--seeds") -> List[int]:
    """'0,1,2' -> [0, 1, 2]; refuses an empty list, non-integers and negative seeds, naming `flag`."""
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers (e.g. 0,1,2), got {text!r}") from None
    if not seeds:
        raise ValueError(f"{flag} must name at least one seed (got {text!r})")
    for seed in seeds:
        non_negative_seed(flag, seed)
    return seeds
