"""The one way every algorithm is trained: same run dir, evaluation protocol, logging and checkpoint.

`train_run("ppo" | "dqn" | "a2c" | "ez", env_id, seed, steps, logdir, eval_interval=...)` builds the
algorithm, trains it with a PeriodicEval (deterministic episodes on the separately seeded eval env),
writes config.yaml, the checkpoint (model.pt for ez, model.zip for Stable-Baselines3) and, last,
result.json, which marks the run as finished. `load_any(path)` reopens any run's checkpoint.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from tqdm.auto import tqdm

import envs
from agent.baselines import ALGOS, Baseline, NotApplicable, wrapper_path
from agent.eval_hook import EvalRecord, PeriodicEval
from agent.logger import RunLogger, run_dir_name, write_yaml

RESULT_FILE = "result.json"  # written last: its presence means the run finished
CHECKPOINT = {"ez": "model.pt", **{a: "model.zip" for a in ALGOS}}


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
        data = {**asdict(self), "run_dir": str(self.run_dir)}
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "RunSummary":
        """The summary of a finished run; FileNotFoundError if the run did not finish."""
        data = json.loads((Path(run_dir) / RESULT_FILE).read_text())
        data["run_dir"] = Path(data["run_dir"])
        data["history"] = [EvalRecord(**r) for r in data["history"]]
        return cls(**data)


def train_run(algo: str, env_id: str, seed: int, steps: int, logdir: str | os.PathLike, *,
              eval_interval: int, eval_episodes: int = 20, config_overrides: Optional[dict] = None,
              env_module: Optional[str] = None, wrappers: Sequence = (), progress_bar: bool = True,
              device: str = "auto", resume: Optional[str] = None, verbose: bool = True) -> RunSummary:
    """Train `algo` on `env_id` for `steps` env steps under the shared protocol; see module doc.

    config_overrides: dotted keys over the ez preset (agent/config.py), or zoo keys over the zoo
    entry for a baseline. resume: a checkpoint to continue from, up to `steps` env steps in total.
    verbose=False silences the per-evaluation lines (used by parallel comparisons).
    """
    algo = algo.lower()
    if algo not in CHECKPOINT:
        raise ValueError(f"Unknown algorithm {algo!r}; choose one of {', '.join(sorted(CHECKPOINT))}.")
    if env_module:
        envs.import_env_module(env_module)  # the eval envs are made in this process too
    run_dir = Path(logdir) / run_dir_name(algo, env_id, seed)
    if resume is not None:
        model = _load_for_training(algo, env_id, seed, resume, device, run_dir)
        done = int(model.num_timesteps)
    else:
        _clear_previous_run(run_dir)
        model = _build(algo, env_id, seed, device, run_dir, config_overrides, env_module, wrappers)
        done = 0
    config = {"algo": algo, "env": env_id, "seed": int(seed), "steps": int(steps),
              "eval_interval": int(eval_interval), "eval_episodes": int(eval_episodes),
              "device": device, "env_module": env_module, "wrappers": [wrapper_path(w) for w in wrappers],
              "resumed_from": str(resume) if resume else None, "checkpoint": CHECKPOINT[algo],
              **_hyperparameters(algo, env_id, model)}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(config, run_dir / "config.yaml")

    logger = RunLogger(run_dir, verbose=verbose)  # its clock is the wall-clock axis: training + evals
    hook = PeriodicEval(env_id, seed, eval_interval, eval_episodes, logger=logger, wrappers=wrappers,
                        check=(algo == "ez"), write=tqdm.write)
    if done:  # a resumed run continues the first session's evaluation grid (PeriodicEval has no
        hook._next = (done // eval_interval + 1) * eval_interval  # start-step parameter yet)
    try:
        learn_kwargs = {"reset_num_timesteps": False} if (resume is not None and algo != "ez") else {}
        model.learn(max(0, int(steps) - done), progress_bar=progress_bar, callback=hook, **learn_kwargs)
        env_steps = int(model.num_timesteps)
        final = hook.final(env_steps, lambda obs: model.predict(obs, deterministic=True)[0])
        model.save(run_dir / CHECKPOINT[algo])
        summary = RunSummary(run_dir=run_dir, history=list(hook.history), final_mean_return=final.mean_return,
                             final_std_return=final.std_return, wall_clock_s=hook.history[-1].wall_clock_s,
                             parameters=int(model.num_parameters), algo=algo, env_id=env_id, seed=int(seed),
                             env_steps=env_steps, config=config)
        summary.save(run_dir / RESULT_FILE)
    finally:
        logger.close()
    return summary


def load_any(path: str | os.PathLike, device: str = "auto"):
    """Open a run dir, model.zip (Stable-Baselines3) or model.pt (ez) as an object with `predict`."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in ("model.zip", "model.pt") if (path / name).exists()]
        if not found:
            raise FileNotFoundError(f"{path} holds no model.zip or model.pt; is it a finished run directory?")
        path = found[0]
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    if path.suffix == ".zip":
        return Baseline.load(path, device=device)
    from agent.ez import EZAgent  # imported here: baselines work without the planner stack
    return EZAgent.load(path, device=device)


def _build(algo, env_id, seed, device, run_dir, overrides, env_module, wrappers):
    if algo != "ez":
        return Baseline(algo, env_id, seed=seed, device=device, tensorboard_log=run_dir,
                        hyperparams=overrides, env_module=env_module, wrappers=wrappers)
    _check_planner_applicable(env_id, env_module, wrappers)
    from agent.config import resolve
    from agent.ez import EZAgent
    return EZAgent(env_id, config=resolve(env_id, overrides=overrides), seed=seed, device=device,
                   tensorboard_log=run_dir, env_module=env_module, wrappers=wrappers)


def _check_planner_applicable(env_id, env_module, wrappers) -> None:
    """The planner's space check, raised as NotApplicable so a comparison reports it as such."""
    env = envs.make(env_id, None, wrappers=wrappers, env_module=env_module, check=False)
    try:
        envs.check_spaces(env, env_id)
    except ValueError as e:
        raise NotApplicable(f"ez does not apply to {env_id}: {e}") from e
    finally:
        env.close()


def _load_for_training(algo, env_id, seed, checkpoint, device, run_dir):
    if algo != "ez":
        model = Baseline.load(checkpoint, device=device, tensorboard_log=run_dir)
    else:
        from agent.ez import EZAgent
        model = EZAgent.load(checkpoint, device=device, tensorboard_log=run_dir)
    found = (getattr(model, "algo", "ez"), model.env_id, model.seed)
    if found != (algo, env_id, int(seed)):
        raise ValueError(f"--resume {checkpoint} holds a {found[0]} run on {found[1]} with seed {found[2]}, "
                         f"not {algo} on {env_id} with seed {seed}.")
    return model


def _hyperparameters(algo: str, env_id: str, model) -> dict:
    if algo != "ez":
        return {"hyperparameters": model.hyperparams.raw, "hyperparameters_source": model.hyperparams.source}
    return {"hyperparameters": model.config.to_dict(),
            "hyperparameters_source": f"agent/config.py preset for {env_id} + config overrides"}


def _clear_previous_run(run_dir: Path) -> None:
    """A fresh run in an old run dir would append to the old curves; drop the append-only outputs."""
    stale = [run_dir / "evaluations.csv", run_dir / RESULT_FILE, *run_dir.glob("events.out.tfevents.*")]
    stale = [p for p in stale if p.exists()]
    if stale:
        tqdm.write(f"note: starting {run_dir} afresh; removing the previous run's evaluations, "
                   f"result and TensorBoard events")
        for p in stale:
            p.unlink()
