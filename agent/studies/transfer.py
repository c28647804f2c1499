"""The transfer study: the same trained networks under a swapped objective, scored against agents
trained on that objective (`train.py transfer`).

Per base environment, one ez agent is trained on the environment's own reward. Per objective of
the suite (agent/studies/transfer_suite.py), on that objective's own return (the task's reward,
through envs.tasks.TaskReward, on the objective's environment):

    random     a uniformly random policy
    floor      the agent with its learned objective unchanged
    zero_shot  the agent with the hand-written objective (the task's value over predicted
               observations), under each prior setting asked for
    refit      the agent with a value for the task's reward fitted from its stored replay
               (agent/refit.py: no environment steps), under each prior setting
    oracle_ez, oracle_ppo   ez and PPO (zoo settings) trained from scratch on the task's reward,
               same budget

    normalized score = 100 * (R - R_random) / (R_oracle_ez - R_random)

(a task a random policy half-solves cannot inflate it); undefined, and left out of the medians,
where the oracle did not learn the task (it beats random by less than MIN_ORACLE_GAIN). Every measurement is one row of
OUT/results.csv (long format; --resume skips the rows there), every training run a directory
under OUT/runs. The prior used after a swap is chosen on the dev objectives alone: the setting
with the highest median zero-shot score over them; refit's (whose 'learned' is its own fitted
prior) likewise from its refit scores.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from agent.evaluation import EvalResult, evaluate
from agent.studies.transfer_suite import BUDGETS, TRAIN_OVERRIDES, SuiteObjective
from common.files import atomic_path, atomic_write_text

FIELDS = ("objective", "env", "split", "method", "prior", "mean_return", "success", "wall_s")
PRIORS = ("learned", "mixed(0.5)", "uniform", "root-uniform", "root-mixed(0.5)")
# An oracle must beat random by this fraction of the larger of their returns (in size) to be a
# reference: an oracle that did not learn the task would otherwise blow scores up to thousands of %.
MIN_ORACLE_GAIN = 0.1


@dataclass
class Measurement:
    objective: str
    env: str
    split: str
    method: str
    prior: str
    mean_return: float
    success: float
    wall_s: float = 0.0

    @property
    def key(self) -> tuple:
        return self.objective, self.method, self.prior


def measured(result: EvalResult) -> tuple:
    """(mean return, success rate from the task wrapper's info['task_success'])."""
    return result.mean_return, float(np.mean([bool(i.get("task_success", False)) for i in result.final_infos]))


def read_measurements(path: Path) -> List[Measurement]:
    if not path.exists():
        return []
    with path.open() as f:
        return [Measurement(r["objective"], r["env"], r["split"], r["method"], r["prior"], float(r["mean_return"]),
                            float(r["success"]), float(r["wall_s"])) for r in csv.DictReader(f)]


def write_measurements(rows: Sequence[Measurement], path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for m in rows:
            w.writerow({k: getattr(m, k) for k in FIELDS})


class TransferRun:
    """One study in OUT: trains what is missing, measures what is missing, keeps every row."""

    def __init__(self, out: str | Path, seed: int = 0, episodes: int = 20, priors: Sequence[str] = PRIORS,
                 oracles: Sequence[str] = ("ez", "ppo"), refit_steps: int = 3000,
                 budgets: Optional[Dict[str, int]] = None, bases: Optional[Dict[str, str | Path]] = None,
                 device: str = "auto", progress_bar: bool = False, write: Callable[[str], None] = print,
                 evaluation_env=None):
        """bases: {base env id: run directory} of agents trained earlier, loaded instead of trained
        (each needs its resume.pt: refit reads its replay). evaluation_env: an EnvChoice
        (agent/cli/env_flags.py) every measurement runs on instead of the objective's own env, with
        the task's reward wrapper applied after its wrappers; oracles are still trained on the
        objective's own env. A study keeps one: OUT/evaluation_env.json, checked on --resume."""
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.seed, self.episodes, self.priors = int(seed), int(episodes), list(priors)
        self.oracles, self.refit_steps = list(oracles), int(refit_steps)
        self.budgets = {**BUDGETS, **(budgets or {})}
        self.bases = {env: Path(p) for env, p in (bases or {}).items()}
        self.device, self.progress_bar, self.write = device, progress_bar, write
        self.path = self.out / "results.csv"
        self.rows = read_measurements(self.path)
        self.evaluation_env = evaluation_env
        self._keep_evaluation_env()

    def _keep_evaluation_env(self) -> None:
        """Rows measured on one environment never mix with rows measured on another."""
        path = self.out / "evaluation_env.json"
        mine = None if self.evaluation_env is None else self.evaluation_env._asdict()
        if path.exists():
            theirs = json.loads(path.read_text())
        else:
            theirs = mine if not self.rows else None  # rows already there were measured on their own envs
            atomic_write_text(path, json.dumps(theirs))
        if theirs != mine:
            show = lambda e: "each objective's own env" if e is None else json.dumps(e)  # noqa: E731
            raise ValueError(f"{self.out} holds measurements on {show(theirs)}; this run asks for {show(mine)}. "
                             f"Pick another --out for another evaluation environment")

    # ---------------------------------------------------------------- training
    def _train(self, algo: str, env_id: str, label: str, wrappers: Sequence[str] = ()) -> Path:
        from agent.runner import finished_run, run_dir_name, train_run
        steps = self.budgets[_base_of(env_id, self.budgets)]
        logdir = self.out / "runs" / label
        summary = finished_run(logdir / run_dir_name(algo, env_id, self.seed), steps)
        if summary is None:
            self.write(f"training {algo} on {env_id} {label} ({steps:,} steps)")
            summary = train_run(algo, env_id, self.seed, steps, logdir, overwrite=True,
                                eval_interval=max(1, steps // 5), eval_episodes=self.episodes,
                                config_overrides=dict(TRAIN_OVERRIDES) if algo == "ez" else None,
                                wrappers=list(wrappers), progress_bar=self.progress_bar, device=self.device,
                                verbose=False, checkpoint_seconds=None)
        return summary.run_dir

    def base(self, env_id: str) -> Path:
        if env_id in self.bases:
            return self.bases[env_id]
        return self._train("ez", env_id, "base")

    # ---------------------------------------------------------------- measuring
    def _have(self, key: tuple) -> bool:
        return any(m.key == key for m in self.rows)

    def _add(self, m: Measurement) -> None:
        self.rows.append(m)
        write_measurements(self.rows, self.path)
        self.write(f"{m.objective:<28} {m.method:<10} {m.prior:<11} return {m.mean_return:8.3f}  "
                   f"success {m.success:.2f}" + (f"  ({m.wall_s:.0f} s)" if m.wall_s else ""))

    def _env(self, o: SuiteObjective) -> str:
        return o.env if self.evaluation_env is None else self.evaluation_env.env_id

    def _evaluate(self, act, o: SuiteObjective, check: bool = True, agent=None) -> tuple:
        """`act` on the objective's env (or the study's evaluation env) with the task's reward wrapper;
        `agent`, the one acting (None: a random policy), adds what its input needs on top (its
        observation history, Agent.env_wrappers), so the reward wrapper still reads one observation."""
        e = self.evaluation_env
        env_id, wrappers = (o.env, [o.wrapper]) if e is None else (e.env_id, [*e.wrappers, o.wrapper])
        if agent is not None:
            wrappers = agent.env_wrappers(wrappers)
        return measured(evaluate(act, env_id, self.seed, self.episodes, wrappers=wrappers,
                                 env_kwargs=None if e is None else e.env_kwargs, check=check))

    def measure(self, o: SuiteObjective) -> None:
        from agent.algorithms import load_agent
        from agent.ez import EZAgent
        from agent.refit import refit
        from agent.runner import RunSummary
        row = lambda method, prior, r, wall=0.0: self._add(  # noqa: E731
            Measurement(o.name, self._env(o), o.split, method, prior, r[0], r[1], wall))
        if not self._have((o.name, "random", "")):
            rng = np.random.default_rng(self.seed)
            n = _num_actions(self._env(o))
            row("random", "", self._evaluate(lambda obs: rng.integers(0, n, len(obs)), o))
        # The base agent is trained (or loaded) only when a row needs it: a resumed study whose
        # base rows are all there trains oracles alone.
        base_rows = [(o.name, "floor", "learned"), *((o.name, m, p) for m in ("zero_shot", "refit")
                                                     for p in self.priors)]
        base_dir = None if all(self._have(k) for k in base_rows) else self.base(o.base_env)
        if not self._have((o.name, "floor", "learned")):
            agent = load_agent(base_dir, device=self.device)
            row("floor", "learned", self._evaluate(lambda obs: agent.predict(obs)[0], o, agent=agent))
        todo = [p for p in self.priors if not self._have((o.name, "zero_shot", p))]
        if todo:
            agent = load_agent(base_dir, device=self.device)
            agent.set_objective(o.zero_shot)
            for prior in todo:
                agent.set_prior(prior)
                row("zero_shot", prior, self._evaluate(lambda obs: agent.predict(obs)[0], o, agent=agent))
        todo = [p for p in self.priors if not self._have((o.name, "refit", p))]
        if todo:
            agent = EZAgent.load(base_dir / EZAgent.RESUME, device=self.device)
            report = refit(agent, o.reward, name=o.task, steps=self.refit_steps, seed=self.seed)
            for prior in todo:
                agent.set_prior(prior)
                row("refit", prior, self._evaluate(lambda obs: agent.predict(obs)[0], o, agent=agent), report.wall_s)
        for algo in self.oracles:
            if self._have((o.name, f"oracle_{algo}", "")):
                continue
            run_dir = self._train(algo, o.env, _slug(o.name), wrappers=[o.wrapper])
            agent = load_agent(run_dir, device=self.device)
            wall = RunSummary.load(run_dir).wall_clock_s
            row(f"oracle_{algo}", "", self._evaluate(lambda obs: np.asarray(agent.predict(obs, deterministic=True)[0]),
                                                      o, check=type(agent).can_swap_objective, agent=agent), wall)

    def run(self, objectives: Sequence[SuiteObjective]) -> List[Measurement]:
        for o in objectives:
            self.measure(o)
        return self.rows


def _slug(name: str) -> str:
    return "oracle_" + "".join(c if c.isalnum() or c in "+-." else "_" for c in name)


def _base_of(env_id: str, budgets: Dict[str, int]) -> str:
    if env_id in budgets:
        return env_id
    from envs.testbeds import TEST_SPLITS
    if env_id in TEST_SPLITS:
        return TEST_SPLITS[env_id]
    raise ValueError(f"no training budget for {env_id}; give one (budgets={{{env_id!r}: steps}})")


def _num_actions(env_id: str) -> int:
    import envs
    env = envs.make(env_id)
    n = int(env.action_space.n)
    env.close()
    return n


# -------------------------------------------------------------------- scoring
def score(r: float, r_random: float, r_oracle: float) -> float:
    """100 * (r - r_random) / (r_oracle - r_random); NaN when the oracle beats random by less than
    MIN_ORACLE_GAIN of the larger return (it did not learn the task: no reference)."""
    gain = r_oracle - r_random
    if gain <= MIN_ORACLE_GAIN * max(abs(r_oracle), abs(r_random), 1e-6):
        return float("nan")
    return 100.0 * (r - r_random) / gain


def _nanmean(values: Sequence[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else float("nan")


def _nanmedian(values: Sequence[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.median(v)) if v else float("nan")


def table(rows: Sequence[Measurement], objectives: Sequence[SuiteObjective], prior: str,
          refit_prior: Optional[str] = None) -> List[dict]:
    """One dict per objective measured: returns, success rates and scores, zero-shot at `prior`
    and refit at `refit_prior` (default: `prior`)."""
    by = {m.key: m for m in rows}
    out = []
    for o in objectives:
        get = lambda method, p="": by.get((o.name, method, p))  # noqa: E731
        rand, oracle = get("random"), get("oracle_ez")
        if rand is None or oracle is None:
            continue
        entry = {"env": o.env, "objective": o.name, "split": o.split, "task": o.reward,
                 "random": rand.mean_return, "oracle_ez": oracle.mean_return,
                 "oracle_ez_wall_s": oracle.wall_s, "oracle_ez_success": oracle.success}
        for method, p in (("floor", "learned"), ("zero_shot", prior), ("refit", refit_prior or prior),
                          ("oracle_ppo", "")):
            m = get(method, p)
            if m is not None:
                entry[method] = m.mean_return
                entry[f"{method}_success"] = m.success
                entry[f"pct_oracle_{method}"] = score(m.mean_return, rand.mean_return, oracle.mean_return)
        refit = get("refit", refit_prior or prior)
        if refit is not None and oracle.wall_s > 0:
            entry["refit_wall_s"] = refit.wall_s
            entry["refit_wall_fraction"] = refit.wall_s / oracle.wall_s
        out.append(entry)
    return out


def choose_prior(rows: Sequence[Measurement], objectives: Sequence[SuiteObjective],
                 priors: Sequence[str] = PRIORS, method: str = "zero_shot") -> tuple:
    """(the prior setting with the highest median % of the oracle of `method` ('zero_shot' or
    'refit') over the DEV objectives, {prior: that median}). Evaluation objectives are never read.
    Ties go to the setting listed first in `priors` (PRIORS starts with 'learned': no change)."""
    dev = [o for o in objectives if o.split == "dev"]
    medians = {p: _nanmedian([e.get(f"pct_oracle_{method}", math.nan) for e in table(rows, dev, p)])
               for p in priors}
    valid = {p: v for p, v in medians.items() if not math.isnan(v)}
    return (max(valid, key=valid.get) if valid else priors[0]), medians


def summary(rows: Sequence[Measurement], objectives: Sequence[SuiteObjective], priors: Sequence[str] = PRIORS,
            command: str = "") -> dict:
    prior, dev_medians = choose_prior(rows, objectives, priors, "zero_shot")
    refit_prior, refit_medians = choose_prior(rows, objectives, priors, "refit")
    entries = table(rows, objectives, prior, refit_prior)
    for e in entries:
        e["command"] = command
    evaluation = [e for e in entries if e["split"] == "eval"]
    key = lambda k, es: _nanmedian([e.get(k, float("nan")) for e in es])  # noqa: E731
    return {
        "prior_after_swap": prior, "dev_median_zero_shot_by_prior": dev_medians,
        "refit_prior": refit_prior, "dev_median_refit_by_prior": refit_medians,
        "median_pct_oracle_refit": key("pct_oracle_refit", evaluation),
        "median_pct_oracle_zero_shot": key("pct_oracle_zero_shot", evaluation),
        "median_pct_oracle_floor": key("pct_oracle_floor", evaluation),
        "median_pct_oracle_ppo": key("pct_oracle_oracle_ppo", evaluation),
        "dev_median_pct_oracle_refit": key("pct_oracle_refit", [e for e in entries if e["split"] == "dev"]),
        "dev_median_pct_oracle_zero_shot": key("pct_oracle_zero_shot", [e for e in entries if e["split"] == "dev"]),
        "refit_wall_fraction": key("refit_wall_fraction", entries),
        "objectives": entries, "command": command,
    }


def render_markdown(s: dict) -> str:
    f = lambda x: "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0f}"  # noqa: E731
    g = lambda x: "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"  # noqa: E731
    lines = [f"# Transfer: % of the ez oracle; prior after a swap {s['prior_after_swap']}, with refit "
             f"{s['refit_prior']} ('learned' is refit's own prior; both chosen on the dev objectives)",
             "", f"Evaluation objectives, median: refit {f(s['median_pct_oracle_refit'])} %, zero-shot "
             f"{f(s['median_pct_oracle_zero_shot'])} %, learned objective unchanged {f(s['median_pct_oracle_floor'])} %, "
             f"PPO oracle {f(s['median_pct_oracle_ppo'])} %; refit wall-clock / oracle's: "
             f"{g(s['refit_wall_fraction'])}", "",
             "| objective | split | env | random | floor | zero-shot | refit | ez oracle | PPO oracle | "
             "% zero-shot | % refit | % PPO | success zero-shot / refit / oracle | wall s refit / oracle |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in s["objectives"]:
        lines.append(f"| {e['objective']} | {e['split']} | {e['env']} | {g(e['random'])} | {g(e.get('floor'))} | "
                     f"{g(e.get('zero_shot'))} | {g(e.get('refit'))} | {g(e['oracle_ez'])} | {g(e.get('oracle_ppo'))} | "
                     f"{f(e.get('pct_oracle_zero_shot'))} | {f(e.get('pct_oracle_refit'))} | "
                     f"{f(e.get('pct_oracle_oracle_ppo'))} | {g(e.get('zero_shot_success'))} / "
                     f"{g(e.get('refit_success'))} / {g(e.get('oracle_ez_success'))} | "
                     f"{f(e.get('refit_wall_s'))} / {f(e.get('oracle_ez_wall_s'))} |")
    lines += ["", "Dev medians by prior, zero-shot %: "
              + ", ".join(f"{p} {f(v)}" for p, v in s["dev_median_zero_shot_by_prior"].items())
              + "; refit %: " + ", ".join(f"{p} {f(v)}" for p, v in s["dev_median_refit_by_prior"].items())]
    return "\n".join(lines) + "\n"


def plot(s: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    entries = s["objectives"]
    names = [f"{e['objective']} ({e['split']})" for e in entries]
    methods = [("pct_oracle_floor", "learned objective"), ("pct_oracle_zero_shot", "zero-shot"),
               ("pct_oracle_refit", "refit"), ("pct_oracle_oracle_ppo", "PPO oracle")]
    x = np.arange(len(entries))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(entries) + 2), 4))
    for i, (k, label) in enumerate(methods):
        ax.bar(x + (i - 1.5) * 0.2, [e.get(k, np.nan) for e in entries], 0.2, label=label)
    ax.axhline(100, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("% of the ez oracle")
    ax.set_title(f"transfer (prior after swap: {s['prior_after_swap']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_report(s: dict, out: Path) -> None:
    atomic_write_text(out / "summary.md", render_markdown(s))
    atomic_write_text(out / "transfer.json", json.dumps(_no_nan(s), indent=1))
    plot(s, out / "transfer.png")


def _no_nan(x):
    """NaN (an undefined score) as JSON null."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_nan(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x
