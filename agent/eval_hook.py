"""Periodic evaluation shared by every algorithm: same interval, episodes, seeds and logging.

A training loop calls `hook(env_steps, act)` as often as it likes; the hook evaluates whenever
`env_steps` has passed the next multiple of `interval`, and `hook.final(...)` once at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np

from agent.evaluation import EvalResult, evaluate
from agent.logger import RunLogger


@dataclass
class EvalRecord:
    env_steps: int
    wall_clock_s: float
    mean_return: float
    std_return: float


@dataclass
class PeriodicEval:
    env_id: str
    seed: int
    interval: int
    episodes: int = 20
    logger: Optional[RunLogger] = None
    wrappers: Sequence = ()
    env_kwargs: dict = field(default_factory=dict)
    check: bool = True
    write: Callable[[str], None] = print
    history: List[EvalRecord] = field(default_factory=list)
    last: Optional[EvalResult] = None

    def __post_init__(self):
        if self.interval < 1:
            raise ValueError(f"evaluation interval must be >= 1 environment step, got {self.interval}")
        self._next = self.interval
        if self.logger is None:
            self.logger = RunLogger(None, tensorboard=False)

    def due(self, env_steps: int) -> bool:
        return env_steps >= self._next

    def __call__(self, env_steps: int, act: Callable[[np.ndarray], np.ndarray]) -> Optional[EvalResult]:
        if not self.due(env_steps):
            return None
        while self._next <= env_steps:
            self._next += self.interval
        return self._run(env_steps, act)

    def final(self, env_steps: int, act: Callable[[np.ndarray], np.ndarray]) -> EvalResult:
        """Evaluate at the end of training unless an evaluation at this step already happened."""
        if self.history and self.history[-1].env_steps == env_steps and self.last is not None:
            return self.last
        return self._run(env_steps, act)

    def _run(self, env_steps: int, act) -> EvalResult:
        res = evaluate(act, self.env_id, self.seed, self.episodes, wrappers=self.wrappers,
                       env_kwargs=self.env_kwargs, check=self.check)
        self.logger.evaluation(env_steps, res.mean_return, res.std_return, write=self.write)
        import time
        self.history.append(EvalRecord(env_steps, time.time() - self.logger.start,
                                       res.mean_return, res.std_return))
        self.last = res
        return res
