"""`train.py compare`: train every (algo, seed) with the shared runner and summarize the lot.

    python train.py compare --env CartPole-v1 --algos ez,ppo,dqn --seeds 0,1,2 --steps 20000 --out results/

Writes OUT/results.csv (one row per evaluation), OUT/summary.md and OUT/curves.png; each run lives
in OUT/runs/<algo>_<env>_s<seed>/. Results are rewritten after every run, so an interrupted
comparison keeps what finished, and `--resume` skips those runs.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import gymnasium as gym
from tqdm.auto import tqdm

import envs
from agent.algorithms import algorithm, parse_algorithms
from agent.runner import RunSummary, check_run_options, run_dir_name, train_run
from agent.studies import compare
from common.checks import at_least, parse_seeds


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default="CartPole-v1", help="gymnasium environment id (default CartPole-v1)")
    p.add_argument("--algos", default="ez,ppo,dqn", help="comma-separated algorithms (ez, ppo, dqn, a2c; default ez,ppo,dqn)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--steps", type=int, default=20_000, help="environment steps per run (default 20000)")
    p.add_argument("--out", default="results", help="output directory (default results/)")
    p.add_argument("--eval-interval", type=int, default=None,
                   help="environment steps between evaluations (default steps/10)")
    p.add_argument("--eval-episodes", type=int, default=20, help="deterministic episodes per evaluation (default 20)")
    p.add_argument("--threshold", type=float, default=None,
                   help="return counted as solved (default: the environment's reward_threshold)")
    p.add_argument("--workers", type=int, default=1, help="runs trained at once, one process each (default 1)")
    p.add_argument("--resume", action="store_true", help="skip runs that already finished in --out")
    p.add_argument("--env-module", default=None, help="module to import first; it registers more env ids")
    p.add_argument("--wrapper", action="append", default=[], metavar="MODULE:CLASS",
                   help="gymnasium wrapper applied to every env, in order (repeatable); arguments as "
                        "literals: 'gymnasium.wrappers:DiscretizeAction(bins=5)'")
    p.add_argument("--device", default="auto", help="torch device for every run (default auto)")
    p.add_argument("--no-audit", action="store_true",
                   help="skip compare's search-amplification audit of each finished run of an agent that "
                        "plans, on the evaluation protocol's episodes (agent/studies/audit.py)")


@dataclass
class Job:
    """One (algo, seed) run, picklable so that a worker process can take it."""
    algo: str
    seed: int
    env_id: str
    steps: int
    runs_dir: str
    eval_interval: int
    eval_episodes: int
    env_module: Optional[str] = None
    wrappers: List[str] = field(default_factory=list)
    device: str = "auto"
    threads: int = 1
    progress_bar: bool = True
    audit: bool = True

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / run_dir_name(self.algo, self.env_id, self.seed)


def run(args: argparse.Namespace) -> int:
    algos = parse_algorithms(args.algos)
    seeds = parse_seeds(args.seeds, "--seeds")
    # Every run would refuse these itself, each as an error row; refuse them once, before any run.
    at_least("--workers", args.workers, 1)
    check_run_options(steps=args.steps, seed=seeds[0], eval_episodes=args.eval_episodes, device=args.device,
                      eval_interval=1 if args.eval_interval is None else args.eval_interval)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threshold = args.threshold if args.threshold is not None else _reward_threshold(args.env, args.env_module)
    jobs = [Job(algo, seed, args.env, args.steps, str(out / "runs"), args.eval_interval or max(1, args.steps // 10),
                args.eval_episodes, args.env_module, list(args.wrapper), args.device,
                getattr(args, "threads", 1), progress_bar=args.workers == 1,
                audit=not getattr(args, "no_audit", False))
            for algo in algos for seed in seeds]

    results: Dict[Tuple[str, int], List[dict]] = {}
    todo = []
    for job in jobs:
        finished = _finished_rows(job) if args.resume else None
        if finished is not None:
            results[(job.algo, job.seed)] = finished
        else:
            todo.append(job)
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"compare {args.env}", unit="run",
              dynamic_ncols=True) as bar:
        if len(jobs) != len(todo):
            tqdm.write(f"resume: {len(jobs) - len(todo)} finished runs skipped")
        for job, rows in _execute(todo, args.workers):
            results[(job.algo, job.seed)] = rows
            tqdm.write(_run_line(job, rows))
            bar.update(1)
            _write_outputs(out, jobs, results, args, threshold, plot=False)
    _write_outputs(out, jobs, results, args, threshold, plot=True)
    print((out / "summary.md").read_text())
    print(f"wrote {out / 'results.csv'}, {out / 'summary.md'}, {out / 'curves.png'}")
    return 0


def _execute(jobs: List[Job], workers: int):
    """Yield (job, rows) as runs finish: in this process, or in a pool of fresh processes."""
    if workers == 1:
        for job in jobs:
            yield job, run_job(job)
        return
    # spawn, not fork: forked children inherit torch's thread pools and can deadlock
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def run_job(job: Job) -> List[dict]:
    """Train one run and return its results.csv rows; a failure becomes a status row, not a crash."""
    import torch
    torch.set_num_threads(max(1, job.threads))
    try:
        # compare owns OUT/runs: a run that did not finish earlier is trained again in its place
        summary = train_run(job.algo, job.env_id, job.seed, job.steps, job.runs_dir, overwrite=True,
                            eval_interval=job.eval_interval, eval_episodes=job.eval_episodes,
                            env_module=job.env_module, wrappers=job.wrappers, device=job.device,
                            progress_bar=job.progress_bar, verbose=False)
    except envs.NotApplicable as e:
        return [compare.status_row(job.algo, job.seed, compare.NOT_APPLICABLE, e)]
    except Exception as e:  # any crash: record it, keep the comparison going
        job.run_dir.mkdir(parents=True, exist_ok=True)
        (job.run_dir / "error.log").write_text(traceback.format_exc())
        return [compare.status_row(job.algo, job.seed, compare.ERROR, f"{type(e).__name__}: {e}")]
    if algorithm(job.algo).can_audit and job.audit:
        _audit(job)
    return _summary_rows(summary)


def _audit(job: Job) -> None:
    """Write the run's audit.json (search amplification for summary.md); a failure only warns."""
    from agent.algorithms import load_agent
    from agent.studies.audit import QUICK_SWEEP, run_audit
    try:
        agent = load_agent(job.run_dir, device=job.device)
        run_audit(agent, job.env_id, job.seed, job.eval_episodes, simulations=QUICK_SWEEP, out=job.run_dir)
    except Exception as e:  # the run itself finished; its audit is an extra
        tqdm.write(f"warning: audit of {job.run_dir} failed ({type(e).__name__}: {e}); column left blank")


def _summary_rows(summary: RunSummary) -> List[dict]:
    return [compare.evaluation_row(summary.algo, summary.seed, r.env_steps, r.wall_clock_s, r.mean_return,
                                   r.std_return) for r in summary.history]


def _finished_rows(job: Job) -> Optional[List[dict]]:
    """The rows of a run that finished with this job's settings, or None if it must (re)run."""
    try:
        summary = RunSummary.load(job.run_dir)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    wanted = {"steps": job.steps, "eval_interval": job.eval_interval, "eval_episodes": job.eval_episodes,
              "env_module": job.env_module, "wrappers": job.wrappers}
    same = all(summary.config.get(k) == v for k, v in wanted.items())
    return _summary_rows(summary) if same else None


def _run_extras(jobs: List[Job]) -> Dict[Tuple[str, int], dict]:
    """Per-run facts that are not in results.csv: parameter count, the audit's amplification and
    whether the audit found the prior at the ceiling (amplification None)."""
    extras = {}
    for job in jobs:
        facts = {}
        try:
            facts["parameters"] = RunSummary.load(job.run_dir).parameters
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass
        # compare's own audit (the evaluation protocol's episodes), else the one a training run wrote
        audit = next((p for p in (job.run_dir / "audit.json", job.run_dir / "audit_train.json") if p.exists()),
                     None)
        if audit is not None:
            try:
                data = json.loads(audit.read_text())
                facts["search_amplification"] = data.get("search_amplification")
                facts["ceiling"] = bool(data.get("ceiling"))
            except ValueError:
                tqdm.write(f"warning: {audit} is not valid JSON; search amplification left blank")
        extras[(job.algo, job.seed)] = facts
    return extras


def _write_outputs(out: Path, jobs: List[Job], results, args, threshold, plot: bool) -> None:
    rows = [r for job in jobs for r in results.get((job.algo, job.seed), [])]
    compare.write_results(rows, out / "results.csv")
    summaries = compare.summarize(rows, threshold, _run_extras(jobs))
    (out / "summary.md").write_text(compare.render_markdown(summaries, args.env, threshold, args.steps,
                                                            args.eval_episodes))
    if plot:
        compare.plot_curves(rows, out / "curves.png", args.env, threshold)


def _run_line(job: Job, rows: List[dict]) -> str:
    last = rows[-1]
    if last["status"] != compare.OK:
        return f"{job.algo} s{job.seed}: {last['status']}"
    return (f"{job.algo} s{job.seed}: final return {last['mean_return']:.2f} ± {last['std_return']:.2f} "
            f"at {int(last['env_steps']):,} steps, {last['wall_clock_s']:.1f} s")


def _reward_threshold(env_id: str, env_module: Optional[str]) -> Optional[float]:
    if env_module:
        import envs
        envs.import_env_module(env_module)
    try:
        return gym.spec(env_id).reward_threshold
    except gym.error.Error:
        return None  # unknown ids are reported by the runs themselves
