"""What a finished run was trained with, for benchmarks that report runs: its settings beside its
environment's current preset, and the `train.py` command that reproduces it."""
from __future__ import annotations

import json
import shlex
from typing import Dict


def settings_over_preset(summary) -> Dict[str, object]:
    """The settings a run (agent.runner.RunSummary) used that its env's current preset does not:
    read through AgentConfig, so a setting the run predates counts at the default it ran with."""
    from agent.config import AgentConfig, flatten, preset

    used = flatten(AgentConfig.from_dict(summary.config.get("hyperparameters", {})).to_dict())
    base = flatten(preset(summary.env_id).to_dict())
    return {k: v for k, v in used.items() if base.get(k) != v}


def train_command(summary, changed: Dict[str, object]) -> str:
    """`python train.py ...` for the run: its env, steps, seed, evaluation, wrappers and `changed`."""
    c = summary.config
    return " ".join([f"python train.py --env {summary.env_id} --steps {c.get('steps')} --seed {summary.seed} "
                     f"--eval-interval {c.get('eval_interval')} --eval-episodes {c.get('eval_episodes')}",
                     *(f"--wrapper {shlex.quote(w)}" for w in c.get("wrappers") or ()),
                     *(f"--set '{k}={json.dumps(v)}'" for k, v in changed.items())])
