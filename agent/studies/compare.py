"""Comparison bookkeeping: results.csv rows, per-algorithm aggregates, summary.md and curves.png.

Everything here is a pure function of the rows in results.csv (plus per-run extras such as the
parameter count), so that the numbers in summary.md can be checked against a hand-made file.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from common.files import atomic_path

COLUMNS = ["algo", "seed", "env_steps", "wall_clock_s", "mean_return", "std_return", "status"]
OK = "ok"
NOT_APPLICABLE = "not applicable"
ERROR = "error"

# (env_steps, wall_clock_s, mean_return) of one seed's evaluations, sorted by env_steps
Curve = List[Tuple[float, float, float]]


# ------------------------------------------------------------------------------------ rows
def evaluation_row(algo: str, seed: int, env_steps: int, wall_clock_s: float, mean_return: float,
                   std_return: float) -> dict:
    return {"algo": algo, "seed": int(seed), "env_steps": int(env_steps), "wall_clock_s": float(wall_clock_s),
            "mean_return": float(mean_return), "std_return": float(std_return), "status": OK}


def status_row(algo: str, seed: int, kind: str, message: str) -> dict:
    """A run with no evaluations: `kind` is NOT_APPLICABLE or ERROR, `message` says why."""
    one_line = " ".join(str(message).split())
    return {"algo": algo, "seed": int(seed), "env_steps": None, "wall_clock_s": None,
            "mean_return": None, "std_return": None, "status": f"{kind}: {one_line}"}


def write_results(rows: Iterable[dict], path: str | Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in COLUMNS})


def read_results(path: str | Path) -> List[dict]:
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path} lacks columns {sorted(missing)}; expected {COLUMNS}")
        rows = []
        for r in reader:
            row = {"algo": r["algo"], "seed": int(r["seed"]), "status": r["status"]}
            for k in ("env_steps", "wall_clock_s", "mean_return", "std_return"):
                row[k] = float(r[k]) if r[k] != "" else None
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------- per seed
def seed_curves(rows: Iterable[dict]) -> Dict[str, Dict[int, Curve]]:
    """algo -> seed -> that seed's evaluations (status ok only), sorted by env steps."""
    out: Dict[str, Dict[int, Curve]] = {}
    for r in rows:
        if r["status"] == OK:
            out.setdefault(r["algo"], {}).setdefault(r["seed"], []).append(
                (r["env_steps"], r["wall_clock_s"], r["mean_return"]))
    for by_seed in out.values():
        for curve in by_seed.values():
            curve.sort(key=lambda p: p[0])
    return out


def final_return(curve: Curve) -> float:
    return curve[-1][2]


def steps_to_threshold(curve: Curve, threshold: Optional[float]) -> Optional[float]:
    """Env steps of the first evaluation whose mean return is >= threshold; None if none is."""
    if threshold is None:
        return None
    return next((steps for steps, _, ret in curve if ret >= threshold), None)


def normalized_auc(curve: Curve) -> float:
    """Trapezoid area under mean return vs env steps, divided by the step range it spans.

    The result is in return units: the average evaluation return over training, so runs with
    different evaluation grids (or budgets) stay comparable. One evaluation: its return.
    """
    steps = np.array([p[0] for p in curve], dtype=float)
    returns = np.array([p[2] for p in curve], dtype=float)
    span = steps[-1] - steps[0]
    if span <= 0:
        return float(returns[-1])
    area = float(np.sum((returns[1:] + returns[:-1]) * np.diff(steps)) / 2.0)
    return area / span


# ------------------------------------------------------------------------------ per algo
@dataclass
class AlgoSummary:
    algo: str
    status: str  # OK, or the not-applicable / error status of a run when no seed finished
    seeds: List[int] = field(default_factory=list)  # seeds that finished
    final_mean: float = math.nan  # final evaluation return: mean over seeds
    final_std: float = math.nan  # ... and population std (ddof=0) over seeds
    steps_to_threshold: List[Optional[float]] = field(default_factory=list)  # per finished seed
    auc_mean: float = math.nan
    auc_std: float = math.nan
    wall_clock_s: float = math.nan  # mean over seeds of the last evaluation's wall-clock
    parameters: Optional[int] = None
    search_amplification: Optional[float] = None  # mean over seeds that have an audit result
    ceiling_seeds: int = 0  # seeds whose audit found the prior at the reward threshold (no amplification)
    failures: List[str] = field(default_factory=list)  # "seed N: <status>" for seeds that did not finish

    @property
    def seeds_reached(self) -> int:
        return sum(s is not None for s in self.steps_to_threshold)


def summarize(rows: Sequence[dict], threshold: Optional[float],
              run_extras: Optional[Mapping[Tuple[str, int], dict]] = None) -> Dict[str, AlgoSummary]:
    """Per-algorithm aggregates over seeds, algorithms in order of first appearance.

    run_extras: (algo, seed) -> {"parameters": int, "search_amplification": float or None, "ceiling": bool},
    each optional (an audit at a ceiling has amplification None and ceiling True).
    """
    run_extras = run_extras or {}
    curves = seed_curves(rows)
    order = list(dict.fromkeys(r["algo"] for r in rows))
    out: Dict[str, AlgoSummary] = {}
    for algo in order:
        by_seed = curves.get(algo, {})
        failed = {r["seed"]: r["status"] for r in rows if r["algo"] == algo and r["status"] != OK}
        failures = [f"seed {s}: {st}" for s, st in sorted(failed.items())]
        if not by_seed:
            out[algo] = AlgoSummary(algo, status=next(iter(failed.values())), failures=failures)
            continue
        seeds = sorted(by_seed)
        finals = np.array([final_return(by_seed[s]) for s in seeds])
        aucs = np.array([normalized_auc(by_seed[s]) for s in seeds])
        extras = [run_extras.get((algo, s), {}) for s in seeds]
        params = [e["parameters"] for e in extras if e.get("parameters") is not None]
        amps = [e["search_amplification"] for e in extras if e.get("search_amplification") is not None]
        out[algo] = AlgoSummary(
            algo, status=OK, seeds=seeds, final_mean=float(finals.mean()), final_std=float(finals.std()),
            steps_to_threshold=[steps_to_threshold(by_seed[s], threshold) for s in seeds],
            auc_mean=float(aucs.mean()), auc_std=float(aucs.std()),
            wall_clock_s=float(np.mean([by_seed[s][-1][1] for s in seeds])),
            parameters=int(params[0]) if params else None,
            search_amplification=float(np.mean(amps)) if amps else None,
            ceiling_seeds=sum(bool(e.get("ceiling")) for e in extras), failures=failures)
    return out


# ------------------------------------------------------------------------------ summary.md
def _fmt_amplification(s: AlgoSummary) -> str:
    if s.search_amplification is None:
        return "ceiling" if s.ceiling_seeds else "—"
    text = f"{s.search_amplification:.3g}"
    return text + (f" ({s.ceiling_seeds} at ceiling)" if s.ceiling_seeds else "")


def _fmt_steps(values: List[Optional[float]]) -> str:
    reached = [v for v in values if v is not None]
    if not reached:
        return "not reached"
    text = f"{np.mean(reached):,.0f}"
    if len(reached) > 1:
        text += f" ± {np.std(reached):,.0f}"
    return f"{text} ({len(reached)}/{len(values)} seeds)"


def render_markdown(summaries: Mapping[str, AlgoSummary], env_id: str, threshold: Optional[float],
                    steps: Optional[int] = None, eval_episodes: Optional[int] = None) -> str:
    thr = "no threshold" if threshold is None else f"{threshold:g}"
    lines = [f"# Comparison on {env_id}", ""]
    if steps is not None:
        lines.append(f"Budget: {steps:,} environment steps per run"
                     + (f"; each evaluation: {eval_episodes} deterministic episodes." if eval_episodes else "."))
        lines.append("")
    steps_header = "steps to threshold (none set)" if threshold is None else f"steps to return ≥ {thr}"
    lines += [f"| algo | final return | {steps_header} | AUC | wall-clock (s) | parameters "
              f"| search amplification | seeds |",
              "|---|---|---|---|---|---|---|---|"]
    for s in summaries.values():
        if s.status != OK:  # the reason is listed under the table
            lines.append(f"| {s.algo} | {s.status.split(':')[0]} | — | — | — | — | — | none |")
            continue
        lines.append(
            f"| {s.algo} | {s.final_mean:.2f} ± {s.final_std:.2f} "
            f"| {'—' if threshold is None else _fmt_steps(s.steps_to_threshold)} "
            f"| {s.auc_mean:.2f} ± {s.auc_std:.2f} | {s.wall_clock_s:.1f} "
            f"| {'—' if s.parameters is None else f'{s.parameters:,}'} "
            f"| {_fmt_amplification(s)} "
            f"| {','.join(map(str, s.seeds))} |")
    failures = [f"- {s.algo} {f}" for s in summaries.values() for f in s.failures]
    if failures:
        lines += ["", "Runs without results:", *failures]
    lines += [
        "", "Definitions:",
        "- *final return*: mean return of the last evaluation of each seed; mean ± population std "
        "(ddof=0) over seeds.",
        f"- *{steps_header}*: environment steps at the first evaluation whose mean return "
        "reached the threshold (the environment's `reward_threshold` unless `--threshold` is given); "
        "mean ± std over the seeds that reached it, with how many did.",
        "- *AUC*: area under the evaluation curve (mean return vs environment steps, trapezoid rule) "
        "divided by the step range between the first and the last evaluation, i.e. the average "
        "evaluation return over training, in return units; mean ± std over seeds.",
        "- *wall-clock*: seconds from the start of training to the last evaluation (training and "
        "evaluations), mean over seeds.",
        "- *parameters*: trainable parameters of the acting and learning networks (no target copies).",
        "- *search amplification* (ez): (R_search - R_prior) / max(|R_prior|, 1) from the run's `audit.json`, "
        "which compare writes after each ez run (agent/audit.py; `train.py audit --write` by hand), else "
        "`audit_train.json` from ez's own learn(); — when none. *ceiling*: the policy prior alone reached the "
        "reward threshold in that seed's audit, so the search had no room to add return and no amplification "
        "was measured (such seeds are left out of the mean).",
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ curves.png
def mean_curve(curves: Sequence[Sequence[Tuple[float, float]]]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std over seeds of (x, y) curves, each interpolated onto the union of their x values
    within the range every seed covers (seeds evaluated at different wall-clock times still align)."""
    curves = [sorted(c) for c in curves if len(c)]
    lo = max(c[0][0] for c in curves)
    hi = min(c[-1][0] for c in curves)
    grid = np.unique([x for c in curves for x, _ in c if lo <= x <= hi]) if lo <= hi else np.array([])
    if grid.size == 0:  # seeds do not overlap: fall back to the longest curve alone
        longest = max(curves, key=lambda c: c[-1][0] - c[0][0])
        xs, ys = np.array(longest, dtype=float).T
        return xs, ys, np.zeros_like(ys)
    ys = np.stack([np.interp(grid, *np.array(c, dtype=float).T) for c in curves])
    return grid, ys.mean(axis=0), ys.std(axis=0)


def plot_curves(rows: Sequence[dict], path: str | Path, env_id: str = "",
                threshold: Optional[float] = None) -> None:
    """Mean ± std return over seeds vs environment steps (left) and vs wall-clock (right)."""
    import matplotlib
    matplotlib.use("Agg")  # files only: comparisons run on headless machines
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for algo, by_seed in seed_curves(rows).items():
        for ax, x_index in zip(axes, (0, 1)):
            x, mean, std = mean_curve([[(p[x_index], p[2]) for p in c] for c in by_seed.values()])
            (line,) = ax.plot(x, mean, marker="o" if len(x) == 1 else None, label=f"{algo} ({len(by_seed)} seeds)")
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    for ax, label in zip(axes, ("environment steps", "wall-clock (s)")):
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        if threshold is not None:
            ax.axhline(threshold, color="gray", linestyle="--", linewidth=1)
    axes[0].set_ylabel("evaluation return (mean ± std over seeds)")
    if axes[0].lines:
        axes[0].legend(loc="best")
    fig.suptitle(f"{env_id} learning curves" if env_id else "learning curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
