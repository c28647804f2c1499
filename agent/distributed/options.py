"""The distributed run's options (train.py --workers, --reanalyze-workers, --weight-sync-interval,
--ray-address), checked before anything is built.

They are options of the run, recorded in its config.yaml, not AgentConfig settings: the loss,
targets and ratio of training steps per env step are the same in both modes, a checkpoint
resumes in either mode, and the single-process loop has no use for them. `weight_sync_interval`
does shape learning a little (how stale the acting weights may be), which is why it is recorded
with the run; its default keeps actors within a few training steps of the learner.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from common.checks import at_least


@dataclass(frozen=True)
class DistributedOptions:
    workers: int = 0  # self-play actors; 0: the single-process loop (EZAgent.learn)
    reanalyze_workers: int = 0  # reanalyze actors; 0: the learner reanalyzes its own batches
    weight_sync_interval: int = 10  # training steps between weight publications to the actors
    ray_address: Optional[str] = None  # join this cluster ('auto', 'HOST:PORT'); None: a local instance

    @property
    def enabled(self) -> bool:
        return self.workers >= 1

    def check(self) -> None:
        """ValueError naming the flag for an option out of range or one that needs --workers."""
        at_least("--workers", self.workers, 0)
        at_least("--reanalyze-workers", self.reanalyze_workers, 0)
        at_least("--weight-sync-interval", self.weight_sync_interval, 1)
        if not self.enabled and self.reanalyze_workers:
            raise ValueError(f"--reanalyze-workers {self.reanalyze_workers} needs --workers >= 1 (the single-"
                             f"process loop reanalyzes its own batches)")
        if not self.enabled and self.ray_address:
            raise ValueError(f"--ray-address {self.ray_address} needs --workers >= 1")
        if self.ray_address is not None and not str(self.ray_address).strip():
            raise ValueError("--ray-address must be 'auto' or HOST:PORT, got an empty string")

    def to_dict(self) -> dict:
        return asdict(self)
