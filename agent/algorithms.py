"""The registry of algorithms: one name per class of the agent protocol (agent/protocol.py).

    cls = ALGORITHMS["ppo"]                  # PPOBaseline
    agent = make_agent("ez", "CartPole-v1", seed=0)
    agent = load_agent("runs/ez_CartPole-v1_s0")   # any run directory or checkpoint
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Type

from agent.baselines import BASELINES, Baseline
from agent.ez import EZAgent
from agent.protocol import Agent

ALGORITHMS: Dict[str, Type[Agent]] = {cls.algo: cls for cls in (EZAgent, *BASELINES)}


def algorithm(name: str) -> Type[Agent]:
    """The class registered as `name`, or a clear error naming the known ones."""
    cls = ALGORITHMS.get(str(name).lower())
    if cls is None:
        raise ValueError(f"Unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}.")
    return cls


def parse_algorithms(text: str, flag: str = "--algos") -> list:
    """'ez,ppo' -> ['ez', 'ppo'], refusing unknown names before anything runs."""
    names = [a.strip().lower() for a in str(text).split(",") if a.strip()]
    if not names:
        raise ValueError(f"{flag} must name at least one algorithm ({', '.join(ALGORITHMS)})")
    unknown = [a for a in names if a not in ALGORITHMS]
    if unknown:
        raise ValueError(f"{flag} {text!r}: unknown algorithm {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(ALGORITHMS)}")
    return names


def make_agent(algo: str, env_id: str, **kwargs) -> Agent:
    """`ALGORITHMS[algo](env_id, **kwargs)`."""
    return algorithm(algo)(env_id, **kwargs)


def load_agent(path: str | os.PathLike, device: str = "auto",
               run_dir: Optional[str | os.PathLike] = None) -> Agent:
    """Open a run directory or a checkpoint of any algorithm, ready to predict (or to learn on)."""
    path = Path(path)
    if path.is_dir():
        names = list(dict.fromkeys(cls.CHECKPOINT for cls in ALGORITHMS.values()))
        found = [path / n for n in names if (path / n).exists()]
        if not found:
            raise FileNotFoundError(f"{path} holds no {' or '.join(names)}; is it a finished run directory?")
        path = found[0]
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}. Pass the checkpoint a training run wrote "
                                f"(e.g. runs/ez_CartPole-v1_s0/model.pt) or its run directory.")
    loader = Baseline if path.suffix == ".zip" else EZAgent
    return loader.load(path, device=device, run_dir=run_dir)
