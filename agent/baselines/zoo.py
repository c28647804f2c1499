"""rl-baselines3-zoo hyperparameters: load agent/zoo/{algo}.yml and turn them into SB3 arguments.

The YAML keeps the zoo's own spelling ("lin_0.001", policy_kwargs as "dict(...)" strings,
`normalize`, `n_envs`, `n_timesteps`) so that it can be checked line by line against the zoo;
`split_hyperparams` converts that spelling into constructor arguments the way the zoo does.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

ZOO_DIR = Path(__file__).with_name("zoo")  # the zoo's YAML files, one per algorithm

# Names a policy_kwargs string may use. The zoo writes Python expressions; evaluating them with
# eval() would run arbitrary code from a config file, so only these names are resolved.
_POLICY_KWARGS_NAMES = {
    "nn.ReLU": nn.ReLU, "nn.Tanh": nn.Tanh, "nn.ELU": nn.ELU, "nn.GELU": nn.GELU,
    "nn.LeakyReLU": nn.LeakyReLU, "nn.SiLU": nn.SiLU, "nn.Sigmoid": nn.Sigmoid,
    "True": True, "False": False, "None": None,
}


@dataclass
class ResolvedHyperparams:
    """What the zoo entry (plus overrides) means for one run."""
    algo_kwargs: dict  # passed to the SB3 algorithm constructor
    policy: str = "MlpPolicy"
    n_envs: int = 1
    normalize_kwargs: Optional[dict] = None  # VecNormalize kwargs, None = no normalization
    raw: dict = field(default_factory=dict)  # the YAML values as written (for config.yaml)
    source: str = ""


def zoo_entry(algo: str, env_id: str) -> tuple[dict, str]:
    """The zoo's hyperparameters for (algo, env_id) and a sentence naming where they came from."""
    path = ZOO_DIR / f"{algo}.yml"
    if not path.exists():
        raise ValueError(f"No zoo hyperparameter file {path} for algorithm {algo!r}.")
    table = yaml.safe_load(path.read_text()) or {}
    if env_id in table:
        return dict(table[env_id]), f"rl-baselines3-zoo hyperparams/{algo}.yml [{env_id}] ({path.name})"
    return {}, (f"stable-baselines3 defaults: rl-baselines3-zoo has no {algo} entry for {env_id} "
                f"(entries: {', '.join(table)})")


def parse_policy_kwargs(text: str) -> dict:
    """Evaluate a zoo string such as "dict(net_arch=[64, 64], activation_fn=nn.ReLU)" safely."""
    try:
        tree = ast.parse(" ".join(text.split()), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"policy_kwargs {text!r} is not a Python expression: {e}") from e
    value = _literal(tree.body, text)
    if not isinstance(value, dict):
        raise ValueError(f"policy_kwargs {text!r} must be a dict(...) or {{...}} expression")
    return value


def _literal(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand, text)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, text) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_literal(k, text): _literal(v, text) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" \
            and not node.args:
        return {kw.arg: _literal(kw.value, text) for kw in node.keywords}
    name = ast.unparse(node)
    if name in _POLICY_KWARGS_NAMES:
        return _POLICY_KWARGS_NAMES[name]
    raise ValueError(f"policy_kwargs {text!r}: {name!r} is not allowed (only literals, dict(...) and "
                     f"{', '.join(k for k in _POLICY_KWARGS_NAMES if k.startswith('nn.'))})")


def parse_schedule(value: Any) -> Any:
    """'lin_0.001' -> a schedule from 0.001 to 0 over training (the zoo's linear_schedule)."""
    if isinstance(value, str) and value.startswith("lin_"):
        return LinearSchedule(start=float(value[len("lin_"):]), end=0.0, end_fraction=1.0)
    return value


# Zoo keys about the experiment rather than the algorithm; glasszero supports only these.
_EXPERIMENT_KEYS = {"policy", "n_envs", "normalize", "n_timesteps"}
_UNSUPPORTED_KEYS = {"env_wrapper", "frame_stack", "vec_env_wrapper", "callback", "normalize_kwargs"}


def zoo_hyperparams(algo: str, env_id: str, overrides: Optional[dict] = None) -> ResolvedHyperparams:
    """The zoo entry for (algo, env_id) with `overrides` on top, split the way the zoo splits it."""
    raw, source = zoo_entry(algo, env_id)
    if overrides:
        raw.update(overrides)
        source += f" + overrides {sorted(overrides)}"
    bad = _UNSUPPORTED_KEYS & set(raw)
    if bad:
        raise ValueError(f"{algo} hyperparameters for {env_id} use {sorted(bad)}, which glasszero's "
                         f"baselines do not support; pass wrappers with --wrapper instead.")
    kwargs = {k: v for k, v in raw.items() if k not in _EXPERIMENT_KEYS}
    for key in ("learning_rate", "clip_range", "clip_range_vf"):
        if key in kwargs:
            kwargs[key] = parse_schedule(kwargs[key])
    if isinstance(kwargs.get("policy_kwargs"), str):
        kwargs["policy_kwargs"] = parse_policy_kwargs(kwargs["policy_kwargs"])
    return ResolvedHyperparams(algo_kwargs=kwargs, policy=raw.get("policy", "MlpPolicy"),
                               n_envs=int(raw.get("n_envs", 1)),
                               normalize_kwargs=_normalize_kwargs(raw), raw=raw, source=source)


def _normalize_kwargs(raw: dict) -> Optional[dict]:
    """The zoo's `normalize`: true / false / "{'norm_obs': ..., ...}"; gamma follows the algorithm."""
    norm = raw.get("normalize", False)
    if isinstance(norm, str):
        norm = _literal(ast.parse(norm, mode="eval").body, norm)
    if not norm:
        return None
    kwargs = dict(norm) if isinstance(norm, dict) else {}
    if "gamma" in raw:  # as the zoo does: discount returns with the algorithm's own gamma
        kwargs["gamma"] = raw["gamma"]
    return kwargs
