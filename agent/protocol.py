"""The one interface every algorithm implements, so that the runner, the studies and the command
line never ask which algorithm they hold.

Stable-Baselines3's shape: `learn(total_timesteps, callback, progress_bar)`, `predict(obs,
deterministic) -> (actions, state)`, `save(path)`, `Class.load(path)`, `set_logger(logger)`,
`get_env()`, `num_timesteps`. Beyond it, each class states what it is and what it can do:

    algo              its registry name ("ez", "ppo", ...)
    CHECKPOINT        the file name of its checkpoint in a run directory (model.pt, model.zip)
    RESUME            the file `--resume RUN_DIR` continues from
    can_swap_objective  it plans, so `set_objective` changes what it does with no retraining
    can_audit         it has a policy prior and a search to compare (studies/audit.py)
    can_scale_out     train.py --workers N runs its self-play on Ray actors (agent/distributed/)

The registry (agent/algorithms.py) maps names to classes; nothing compares algorithm names.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Optional, Sequence


class Agent(ABC):
    algo: ClassVar[str]
    CHECKPOINT: ClassVar[str]
    RESUME: ClassVar[str]
    can_swap_objective: ClassVar[bool] = False
    can_audit: ClassVar[bool] = False
    can_scale_out: ClassVar[bool] = False

    env_id: str
    seed: int
    env_module: Optional[str]
    wrappers: Sequence[str]
    run_dir: Optional[Path]

    @abstractmethod
    def __init__(self, env, config=None, seed: int = 0, device: str = "auto",
                 run_dir: Optional[str | os.PathLike] = None, *, env_module: Optional[str] = None,
                 wrappers: Sequence = ()):
        """`env`: a gymnasium id; `config`: the algorithm's settings over its preset (None: the
        preset); `run_dir`: where logs go (None: nowhere)."""

    @property
    @abstractmethod
    def num_timesteps(self) -> int:
        """Environment steps trained so far."""

    @property
    @abstractmethod
    def num_parameters(self) -> int:
        """Trainable parameters of the acting and learning networks (no target copies)."""

    @abstractmethod
    def learn(self, total_timesteps: int, callback=None, progress_bar: bool = False) -> "Agent":
        """Train `total_timesteps` more environment steps; `callback`: an SB3 BaseCallback, a list of
        them, or None. A callback returning False from on_step stops training early."""

    @abstractmethod
    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """(actions, None) for one observation or a batch, as Stable-Baselines3's predict."""

    @abstractmethod
    def save(self, path: str | os.PathLike) -> Path:
        """Write what acting needs, atomically; returns the path written."""

    @abstractmethod
    def save_resume(self, path: str | os.PathLike) -> Path:
        """Write what `--resume` needs to continue training exactly, atomically."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike, device: str = "auto",
             run_dir: Optional[str | os.PathLike] = None) -> "Agent":
        """Restore a checkpoint written by `save` or `save_resume`."""

    @abstractmethod
    def set_logger(self, logger) -> None:
        """Use this Stable-Baselines3 Logger for every scalar from now on."""

    @abstractmethod
    def get_env(self):
        """The training environment (a vector env), as SB3 callbacks expect."""

    def env_wrappers(self, wrappers: Optional[Sequence[str]] = None) -> list:
        """The wrappers of an env this agent acts in: `wrappers` (default: its own, those it was
        trained with), then those its input needs on top (the planner's observation history).
        Every env an agent plays, evaluates or is audited in is made with these."""
        return list(self.wrappers if wrappers is None else wrappers)

    @property
    def can_resume(self) -> bool:
        """Whether this agent holds the training state `--resume` continues from (a resume
        checkpoint, not a bare model)."""
        return True

    def apply_resume_settings(self, settings: Optional[dict]) -> dict:
        """Apply settings given with `--resume` that may change mid-run; refuse the others by name.
        Returns what was applied."""
        if settings:
            raise ValueError(f"{self.algo}'s settings are fixed in its checkpoint; --resume cannot change "
                             f"{', '.join(sorted(settings))}")
        return {}

    @classmethod
    def check_config(cls, env_id: str, config: Optional[dict], resuming: bool = False) -> None:
        """Refuse bad settings (unknown keys, wrong types) before anything is built. `resuming`: they
        change a saved run, whose own config (not the preset) judges them once it is loaded."""

    @abstractmethod
    def hyperparameters(self) -> dict:
        """{"hyperparameters": the resolved settings, "hyperparameters_source": where they came from}."""

    def log_values(self) -> dict:
        """Scalars of the latest training step for TensorBoard (loss/*, search/*, replay/*)."""
        return {}

    def progress_postfix(self) -> dict:
        """A few numbers for the progress bar."""
        return {}

    def summary(self) -> str:
        """A few lines on what this agent is, printed when a run starts."""
        return f"{self.algo} on {self.env_id} (seed {self.seed}), {self.num_parameters:,} parameters"
