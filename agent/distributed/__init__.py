"""Ray actors for self-play and reanalyze (optional extra: pip install -e ".[ray]").

    python train.py --workers 2                        # 2 self-play actors on a local Ray instance
    python train.py --workers 8 --reanalyze-workers 4 --ray-address auto     # on a running cluster

Importing this package does not import Ray: `options.py` checks the flags and `require_ray()`
imports it, with an error that names the extra, only when `--workers` >= 1 is given. The
driver loop is `loop.learn_distributed`; the actors are in `actors.py`, the driver's replay
writer in `writer.py`.
"""
from __future__ import annotations

import importlib

from agent.distributed.options import DistributedOptions

INSTALL = 'pip install -e ".[ray]"'


class RayNotInstalled(ImportError):
    """--workers >= 1 was asked for and Ray cannot be imported."""


def require_ray():
    """The `ray` module, or RayNotInstalled naming the extra to install."""
    try:
        return importlib.import_module("ray")
    except ImportError as e:
        raise RayNotInstalled(f"--workers >= 1 runs self-play on Ray actors, and Ray is not installed ({e}); "
                              f"install the extra with:  {INSTALL}") from e


def learn_distributed(agent, total_timesteps: int, callback, progress_bar: bool, options: DistributedOptions):
    """agent.learn(total_timesteps, callback, progress_bar) with self-play on Ray actors
    (agent/distributed/loop.py)."""
    require_ray()
    from agent.distributed.loop import learn_distributed as learn
    return learn(agent, total_timesteps, callback, progress_bar, options)


__all__ = ["DistributedOptions", "RayNotInstalled", "learn_distributed", "require_ray", "INSTALL"]
