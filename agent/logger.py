"""One TensorBoard tag scheme and one run-directory layout for every algorithm.

Tags (x axis: environment steps):
    eval/mean_return  eval/std_return  time/fps  replay/size
    loss/{policy,value,reward,consistency,...}   search/{root_value,depth,entropy}
Run directory:  <logdir>/<algo>_<env>_s<seed>/ with config.yaml, evaluations.csv,
                the checkpoint (model.pt for ez, model.zip for Stable-Baselines3) and TensorBoard events.
"""
from __future__ import annotations

import csv
import re
import time
from pathlib import Path
from typing import Optional

import yaml


def run_dir_name(algo: str, env_id: str, seed: int) -> str:
    return f"{algo}_{re.sub(r'[^A-Za-z0-9_.-]+', '-', env_id)}_s{seed}"


def write_yaml(data: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)


class RunLogger:
    """TensorBoard scalars + evaluations.csv + one printed line per evaluation."""

    EVAL_FIELDS = ["env_steps", "wall_clock_s", "mean_return", "std_return"]

    def __init__(self, run_dir: Optional[Path], tensorboard: bool = True, verbose: bool = True):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.verbose = verbose
        self.start = time.time()
        self.writer = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(self.run_dir))

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, float(value), int(step))

    def scalars(self, values: dict, step: int) -> None:
        for k, v in values.items():
            self.scalar(k, v, step)

    def evaluation(self, env_steps: int, mean_return: float, std_return: float, write=print) -> None:
        wall = time.time() - self.start
        self.scalar("eval/mean_return", mean_return, env_steps)
        self.scalar("eval/std_return", std_return, env_steps)
        if self.run_dir is not None:
            path = self.run_dir / "evaluations.csv"
            new = not path.exists()
            with path.open("a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(self.EVAL_FIELDS)
                w.writerow([env_steps, f"{wall:.2f}", f"{mean_return:.4f}", f"{std_return:.4f}"])
        if self.verbose:
            write(f"eval | steps {env_steps:>8d} | return {mean_return:8.2f} ± {std_return:6.2f} | {wall:7.1f}s")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
