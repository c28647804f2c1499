"""Keeping Numba's on-disk caches honest across files.

Numba keys a cached function on its own file's timestamp only, so a cached function goes on
running the code of older versions of the functions and constants it takes from other files (after
a `git pull` into an editable install, say): the compiled search once kept running the previous
network code this way."""
from __future__ import annotations

import os


def forget_stale_cache(dispatcher, *modules) -> None:
    """Remove `dispatcher`'s cache index when one of `modules`' files is newer than it; Numba then
    compiles afresh at the next call."""
    try:
        index = dispatcher._cache._cache_file._index_path
    except AttributeError:  # caching off, or Numba's internals moved: nothing to keep fresh
        return
    try:
        if os.path.getmtime(index) < max(os.path.getmtime(m.__file__) for m in modules):
            os.remove(index)
    except OSError:  # no cache yet, or another process removed it first
        pass
