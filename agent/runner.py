"""The one way every algorithm is trained: same run dir, evaluation protocol, logging and checkpoint.

`train_run(algo, env_id, seed, steps, logdir, eval_interval=...)` builds the algorithm from the
registry (agent/algorithms.py), trains it with the shared callbacks (evaluation on the separately
seeded eval env, resume checkpoints, TensorBoard scalars, progress), writes config.yaml, the
checkpoint (the class's CHECKPOINT) and, last, result.json, which marks the run as finished. An
agent that can be audited gets the search-amplification audit afterwards when asked.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import yaml
from stable_baselines3.common.logger import configure
from tqdm.auto import tqdm

import envs
from agent.algorithms import algorithm
from agent.baselines.sb3 import wrapper_path
from agent.callbacks import CheckpointCallback, EvalCallback, EvalRecord, LogCallback, StopOnSignal
from agent.distributed import DistributedOptions, learn_distributed, require_ray
from common.checks import at_least, non_negative_seed, positive
from common.files import atomic_write_text
from nets import resolve_device

RESULT_FILE = "result.json"  # written last: its presence means the run finished
# What a run writes into its directory (besides the checkpoints its class names): a new run refuses
# a directory that holds any of them, so two runs never mix in one directory.
RUN_FILES = ("config.yaml", "evaluations.csv", RESULT_FILE, "audit_train.json", "audit.json")


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT / SIGTERM; its checkpoints were written."""

    def __init__(self, run_dir: Path, env_steps: int):
        super().__init__(f"interrupted at {env_steps:,} environment steps; checkpoints are in {run_dir}. "
                         f"Continue with --resume {run_dir}")
        self.run_dir, self.env_steps = run_dir, env_steps


def run_dir_name(algo: str, env_id: str, seed: int) -> str:
    return f"{algo}_{re.sub(r'[^A-Za-z0-9_.-]+', '-', env_id)}_s{seed}"


@dataclass
class RunSummary:
    run_dir: Path
    history: List[EvalRecord]
    final_mean_return: float
    final_std_return: float
    wall_clock_s: float
    parameters: int
    algo: str = ""
    env_id: str = ""
    seed: int = 0
    env_steps: int = 0
    config: dict = field(default_factory=dict)  # the run's config.yaml: what the finished run used

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps({**asdict(self), "run_dir": str(self.run_dir)}, indent=1))

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "RunSummary":
        """The summary of a finished run; FileNotFoundError if the run did not finish."""
        data = json.loads((Path(run_dir) / RESULT_FILE).read_text())
        data["run_dir"] = Path(data["run_dir"])
        data["history"] = [EvalRecord(**r) for r in data["history"]]
        return cls(**data)


def finished_run(run_dir: str | os.PathLike, steps: int) -> Optional[RunSummary]:
    """The summary of the run in `run_dir` if it finished with a budget of `steps`, else None
    (studies reuse such runs with --resume)."""
    try:
        summary = RunSummary.load(run_dir)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return summary if summary.config.get("steps") == steps else None


def check_run_options(*, steps: int, seed: int, eval_interval: int, eval_episodes: int, device: str = "auto",
                      checkpoint_interval: Optional[int] = None, checkpoint_seconds: Optional[float] = None,
                      log_interval: int = 1, audit_episodes: int = 0, workers: int = 0,
                      reanalyze_workers: int = 0, weight_sync_interval: int = 10,
                      ray_address: Optional[str] = None) -> None:
    """Refuse a run's options before anything is built or any previous result is removed; each
    message names the `train.py` flag (`--steps` for `steps`, ...). A zero budget would otherwise
    write an untrained model as a finished run, and a zero episode count fail only at the first
    evaluation."""
    at_least("--steps", steps, 1)
    non_negative_seed("--seed", seed)
    at_least("--eval-interval", eval_interval, 1)
    at_least("--eval-episodes", eval_episodes, 1)
    if checkpoint_interval is not None:
        at_least("--checkpoint-interval", checkpoint_interval, 1)
    if checkpoint_seconds is not None:
        positive("--checkpoint-seconds", checkpoint_seconds)
    at_least("--log-interval", log_interval, 1)
    at_least("--audit-episodes", audit_episodes, 0)
    resolve_device(device)
    distributed = DistributedOptions(workers, reanalyze_workers, weight_sync_interval, ray_address)
    distributed.check()
    if distributed.enabled:
        require_ray()  # the missing extra is named now, not after the run directory was claimed


def train_run(algo: str, env_id: str, seed: int, steps: int, logdir: str | os.PathLike, *,
              eval_interval: int, eval_episodes: int = 20, config_overrides: Optional[dict] = None,
              env_module: Optional[str] = None, wrappers: Sequence = (), progress_bar: bool = True,
              device: str = "auto", resume: Optional[str] = None, verbose: bool = True,
              checkpoint_interval: Optional[int] = 10_000, checkpoint_seconds: Optional[float] = 600.0,
              log_interval: int = 200, audit_episodes: int = 0, overwrite: bool = False, workers: int = 0,
              reanalyze_workers: int = 0, weight_sync_interval: int = 10,
              ray_address: Optional[str] = None) -> RunSummary:
    """Train `algo` on `env_id` for `steps` env steps under the shared protocol; see module doc.

    config_overrides: the algorithm's settings over its preset (dotted keys for ez, zoo keys for a
    baseline); with `resume`, the settings to change mid-run (others are refused by name).
    resume: a resume checkpoint to continue from, up to `steps` env steps in total (a run stopped
    early and resumed with the same `steps` equals one that never stopped).
    checkpoint_interval / checkpoint_seconds: resume checkpoints every so many env steps / seconds
    (None: only at the end). audit_episodes: the search-amplification audit after training (agents
    that can be audited; 0: none). overwrite: a new run may replace an earlier run's directory
    (otherwise refused). verbose=False silences the per-evaluation lines. Out-of-range options and
    an unavailable device are a ValueError before anything is built (check_run_options).
    SIGINT / SIGTERM stop training after the current step, write the checkpoints and raise
    TrainingInterrupted.
    workers >= 1: self-play on that many Ray actors, with `reanalyze_workers` reanalyze actors, the
    weights published every `weight_sync_interval` training steps, on the cluster at `ray_address`
    or a local Ray instance (agent/distributed/; algorithms with `can_scale_out` only). The run's
    files are the same in both modes, and either mode resumes the other's checkpoints.
    """
    check_run_options(steps=steps, seed=seed, eval_interval=eval_interval, eval_episodes=eval_episodes,
                      device=device, checkpoint_interval=checkpoint_interval,
                      checkpoint_seconds=checkpoint_seconds, log_interval=log_interval,
                      audit_episodes=audit_episodes, workers=workers, reanalyze_workers=reanalyze_workers,
                      weight_sync_interval=weight_sync_interval, ray_address=ray_address)
    distributed = DistributedOptions(workers, reanalyze_workers, weight_sync_interval, ray_address)
    cls = algorithm(algo)
    if distributed.enabled and not cls.can_scale_out:
        raise ValueError(f"--workers runs the planner agent's self-play on Ray actors; {cls.algo} has no such "
                         f"loop (use --algo ez, or --workers 0)")
    if env_module:
        envs.import_env_module(env_module)  # the eval envs are made in this process too
    run_dir = Path(logdir) / run_dir_name(cls.algo, env_id, seed)
    resume_settings = {}
    if resume is not None:
        agent = _load_for_training(cls, env_id, seed, resume, device, run_dir)
        resume_settings = agent.apply_resume_settings(config_overrides)
    else:
        _claim_run_dir(run_dir, cls, overwrite)
        agent = cls(env_id, config=config_overrides, seed=seed, device=device, run_dir=run_dir,
                    env_module=env_module, wrappers=wrappers)
    done = agent.num_timesteps
    config = {"algo": cls.algo, "env": env_id, "seed": int(seed), "steps": int(steps),
              "eval_interval": int(eval_interval), "eval_episodes": int(eval_episodes),
              "device": device, "env_module": env_module, "wrappers": [wrapper_path(w) for w in wrappers],
              "resumed_from": str(resume) if resume else None, "resume_settings": resume_settings or None,
              "checkpoint": cls.CHECKPOINT, **agent.hyperparameters()}
    if distributed.enabled:
        config["distributed"] = distributed.to_dict()
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    logger = configure(str(run_dir), ["tensorboard"])  # one writer for every scalar of the run
    agent.set_logger(logger)
    evaluation = EvalCallback(env_id, seed, eval_interval, eval_episodes, run_dir=run_dir, wrappers=agent.env_wrappers(),
                              check=cls.can_swap_objective, write=tqdm.write if verbose else _silent)
    stop = StopOnSignal()
    # The signal check comes first, so that a stopped step is neither evaluated nor logged; the
    # checkpoint before the evaluation, so that a run stopped by a signal is saved at once.
    callbacks = [stop, CheckpointCallback(run_dir, checkpoint_interval, checkpoint_seconds), evaluation,
                 LogCallback(log_interval)]
    if verbose:
        tqdm.write(agent.summary())
    try:
        if distributed.enabled:
            learn_distributed(agent, max(0, int(steps) - done), callbacks, progress_bar, distributed)
        else:
            agent.learn(max(0, int(steps) - done), callback=callbacks, progress_bar=progress_bar)
        agent.save(run_dir / cls.CHECKPOINT)
        if stop.received is not None:
            raise TrainingInterrupted(run_dir, agent.num_timesteps)
        if cls.can_audit and audit_episodes > 0:
            from agent.studies.audit import training_audit
            training_audit(agent, audit_episodes, run_dir, logger, write=tqdm.write if verbose else _silent)
        final = evaluation.history[-1]
        summary = RunSummary(run_dir=run_dir, history=list(evaluation.history), final_mean_return=final.mean_return,
                             final_std_return=final.std_return, wall_clock_s=final.wall_clock_s,
                             parameters=int(agent.num_parameters), algo=cls.algo, env_id=env_id, seed=int(seed),
                             env_steps=agent.num_timesteps, config=config)
        summary.save(run_dir / RESULT_FILE)
    finally:
        logger.close()
    return summary


def _silent(_: str) -> None:
    pass


def _load_for_training(cls, env_id, seed, checkpoint, device, run_dir):
    agent = cls.load(checkpoint, device=device, run_dir=run_dir)
    found = (agent.algo, agent.env_id, agent.seed)
    if found != (cls.algo, env_id, int(seed)):
        raise ValueError(f"--resume {checkpoint} holds a {found[0]} run on {found[1]} with seed {found[2]}, "
                         f"not {cls.algo} on {env_id} with seed {seed}.")
    if not agent.can_resume:
        raise ValueError(f"--resume {checkpoint} holds a model without its training state (replay, optimizer, "
                         f"random states); resume from {Path(checkpoint).parent / cls.RESUME} or the run "
                         f"directory")
    return agent


def _claim_run_dir(run_dir: Path, cls, overwrite: bool) -> None:
    """A new run gets a directory of its own: an earlier run's files there are refused, or removed
    with `overwrite`."""
    names = set(RUN_FILES) | {c for c in (cls.CHECKPOINT, cls.RESUME)} | {"model.pt", "resume.pt", "model.zip"}
    found = sorted(p for p in [*(run_dir / n for n in names), *run_dir.glob("events.out.tfevents.*")]
                   if p.exists())
    if not found:
        return
    if not overwrite:
        raise ValueError(f"{run_dir} already holds a run ({', '.join(p.name for p in found[:4])}"
                         f"{', ...' if len(found) > 4 else ''}). Continue it with --resume {run_dir}, start this "
                         f"one elsewhere (--logdir / --seed), or replace it with --overwrite")
    tqdm.write(f"note: --overwrite: removing the earlier run's {len(found)} files from {run_dir}")
    for p in found:
        p.unlink()
