"""Everything around the training loop, as Stable-Baselines3 callbacks: evaluation, checkpoints,
TensorBoard scalars and the progress bar.

They subclass SB3's own `BaseCallback`, so they work with every agent of the protocol
(agent/protocol.py) and mix with SB3's callbacks in one list. A callback reaches the agent as
`self.model`: its `predict`, `save_resume`, `log_values`, `num_timesteps` and `logger`.

    agent.learn(20_000, callback=[EvalCallback("CartPole-v1", seed=0, interval=2_000),
                                  CheckpointCallback("runs/x", every_steps=10_000)])
"""
from __future__ import annotations

import csv
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from tqdm.auto import tqdm

from agent.evaluation import EvalResult, evaluate

EVALUATIONS_FILE = "evaluations.csv"
EVAL_FIELDS = ["env_steps", "wall_clock_s", "mean_return", "std_return"]


def as_callback(callback, *extra: Optional[BaseCallback]) -> BaseCallback:
    """One callback from None, a BaseCallback or a list of them, with `extra` ones appended."""
    if callback is None:
        callbacks = []
    elif isinstance(callback, BaseCallback):
        callbacks = [callback]
    elif isinstance(callback, (list, tuple)):
        callbacks = list(callback)
    else:
        raise TypeError(f"callback must be a stable_baselines3 BaseCallback, a list of them or None; "
                        f"got {type(callback).__name__}")
    callbacks += [c for c in extra if c is not None]
    return callbacks[0] if len(callbacks) == 1 else CallbackList(callbacks)


@dataclass
class EvalRecord:
    env_steps: int
    wall_clock_s: float
    mean_return: float
    std_return: float
    eval_seconds: float = 0.0  # how long this evaluation itself took (part of wall_clock_s)


class EvalCallback(BaseCallback):
    """Evaluate the greedy policy every `interval` environment steps on the shared protocol
    (agent/evaluation.py: `episodes` deterministic episodes, separately seeded), and once more at
    the end of training unless the last evaluation was at that step.

    Each evaluation is logged as eval/mean_return and eval/std_return, appended to
    RUN_DIR/evaluations.csv and printed with `write`. Wall-clock is measured from this callback's
    creation (training and evaluations). `stop_at_return`: stop training once an evaluation
    reaches it. A resumed run continues the evaluation grid where it stopped.
    """

    def __init__(self, env_id: str, seed: int, interval: int, episodes: int = 20, *,
                 run_dir: Optional[str | Path] = None, wrappers: Sequence = (), env_kwargs: Optional[dict] = None,
                 check: bool = True, write: Callable[[str], None] = tqdm.write,
                 stop_at_return: Optional[float] = None, evaluate_at_end: bool = True):
        super().__init__()
        if interval < 1:
            raise ValueError(f"evaluation interval must be >= 1 environment step, got {interval}")
        if episodes < 1:
            raise ValueError(f"evaluation episodes must be >= 1, got {episodes}")
        self.env_id, self.seed, self.interval, self.episodes = env_id, int(seed), int(interval), int(episodes)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.wrappers, self.env_kwargs, self.check = list(wrappers), dict(env_kwargs or {}), check
        self.write, self.stop_at_return, self.evaluate_at_end = write, stop_at_return, evaluate_at_end
        self.start = time.time()
        self.history: List[EvalRecord] = []
        self.last: Optional[EvalResult] = None
        self._next = interval

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.interval + 1) * self.interval

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next:
            return True
        while self._next <= self.num_timesteps:
            self._next += self.interval
        result = self.evaluate()
        return self.stop_at_return is None or result.mean_return < self.stop_at_return

    def _on_training_end(self) -> None:
        self.num_timesteps = self.model.num_timesteps
        done = self.history and self.history[-1].env_steps == self.num_timesteps
        if self.evaluate_at_end and not done:
            self.evaluate()

    def evaluate(self) -> EvalResult:
        """Evaluate now, at the agent's current step, and record it."""
        began = time.time()
        result = evaluate(lambda obs: self.model.predict(obs, deterministic=True)[0], self.env_id, self.seed,
                          self.episodes, wrappers=self.wrappers, env_kwargs=self.env_kwargs, check=self.check)
        now = time.time()
        record = EvalRecord(self.num_timesteps, now - self.start, result.mean_return, result.std_return,
                            now - began)
        self.history.append(record)
        self.last = result
        self.logger.record("eval/mean_return", record.mean_return)
        self.logger.record("eval/std_return", record.std_return)
        self.logger.dump(self.num_timesteps)
        if self.run_dir is not None:
            self._append_csv(record)
        self.write(f"eval | steps {record.env_steps:>8d} | return {record.mean_return:8.2f} "
                   f"± {record.std_return:6.2f} | {record.wall_clock_s:7.1f}s")
        return result

    def _append_csv(self, r: EvalRecord) -> None:
        path = self.run_dir / EVALUATIONS_FILE
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(EVAL_FIELDS)
            w.writerow([r.env_steps, f"{r.wall_clock_s:.2f}", f"{r.mean_return:.4f}", f"{r.std_return:.4f}"])


class CheckpointCallback(BaseCallback):
    """Write the agent's resume checkpoint (`save_resume`) into `run_dir` every `every_steps`
    environment steps and every `every_seconds` of wall-clock (either may be None), and at the end
    of training."""

    def __init__(self, run_dir: str | Path, every_steps: Optional[int] = None,
                 every_seconds: Optional[float] = None):
        super().__init__()
        if (every_steps is not None and every_steps < 1) or (every_seconds is not None and every_seconds <= 0):
            raise ValueError(f"checkpoint intervals must be positive, got {every_steps} steps, "
                             f"{every_seconds} seconds")
        self.run_dir, self.every_steps, self.every_seconds = Path(run_dir), every_steps, every_seconds

    def _on_training_start(self) -> None:
        self._next_step = (self.num_timesteps // self.every_steps + 1) * self.every_steps if self.every_steps else None
        self._next_time = time.time() + self.every_seconds if self.every_seconds else None

    def _on_step(self) -> bool:
        due_step = self._next_step is not None and self.num_timesteps >= self._next_step
        due_time = self._next_time is not None and time.time() >= self._next_time
        if due_step or due_time:
            self.save()
        return True

    def _on_training_end(self) -> None:
        self.save()

    def save(self) -> Path:
        path = self.model.save_resume(self.run_dir / type(self.model).RESUME)
        if self.every_steps:
            self._next_step = (self.model.num_timesteps // self.every_steps + 1) * self.every_steps
        if self.every_seconds:
            self._next_time = time.time() + self.every_seconds
        return path


class LogCallback(BaseCallback):
    """Every `interval` environment steps: time/fps of this session and the agent's own scalars
    (`log_values()`: loss/*, search/*, replay/size, ...) to the agent's logger."""

    def __init__(self, interval: int = 200):
        super().__init__()
        if interval < 1:
            raise ValueError(f"log interval must be >= 1 environment step, got {interval}")
        self.interval = int(interval)

    def _on_training_start(self) -> None:
        self._start_time, self._start_steps = time.time(), self.num_timesteps
        self._next = (self.num_timesteps // self.interval + 1) * self.interval

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.interval + 1) * self.interval
            fps = (self.num_timesteps - self._start_steps) / max(1e-9, time.time() - self._start_time)
            self.logger.record("time/fps", fps)
            for key, value in self.model.log_values().items():
                self.logger.record(key, value)
            self.logger.dump(self.num_timesteps)
        return True


class ProgressBarCallback(BaseCallback):
    """A tqdm bar over this session's environment steps (SB3's own needs `rich`)."""

    def __init__(self, desc: str = ""):
        super().__init__()
        self.desc = desc

    def _on_training_start(self) -> None:
        total = self.locals["total_timesteps"] - self.model.num_timesteps
        self._shown = self.model.num_timesteps
        self.bar = tqdm(total=total, desc=self.desc, unit="step", leave=False, dynamic_ncols=True)

    def _on_step(self) -> bool:
        now = self.model.num_timesteps
        self.bar.update(now - self._shown)
        self._shown = now
        postfix = self.model.progress_postfix()
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


class StopOnSignal(BaseCallback):
    """Stop training cleanly at the next environment step after SIGINT (Ctrl-C) or SIGTERM, so that
    the callbacks' end-of-training work (the checkpoint above all) still runs. A second signal
    interrupts at once, as usual. Signal handlers exist only in the main thread; elsewhere this
    callback does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        super().__init__()
        self.received: Optional[int] = None
        self._previous: dict = {}

    def _on_training_start(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:  # the second signal: do not wait
            raise KeyboardInterrupt
        self.received = signum
        tqdm.write(f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
                   f"(again to quit at once)")

    def _on_step(self) -> bool:
        return self.received is None

    def _on_training_end(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
