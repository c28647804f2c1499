"""AgentConfig: the network, the search and the training settings, with one preset per env.

Settings are changed in three ways, applied in this order: the preset for the environment, a YAML
file (`--config FILE`, nested like `to_dict()`), and `--set key=value` with dotted keys
(`search.num_simulations=25`, `net.latent_dim=32`, `lr=3e-3`). Unknown keys and values of the
wrong type are refused with a message naming them.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import yaml

from nets.config import NetConfig
from planners.config import SearchConfig
from planners.objectives import DEFAULT_DISCOUNT

EXPLORE_FAMILIES = ("hold-entry", "novelty", "visit-count")  # agent/explore.py
VALUE_BOOTSTRAPS = ("value", "greedy-q")  # agent/targets.py


@dataclass
class AgentConfig:
    net: NetConfig = field(default_factory=NetConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    # What every search maximizes from the start (planners/objectives.py): "learned", "reward-only:H",
    # "pessimistic:K" or a JSON spec string naming a module:attr function (a YAML string, so quoted:
    # --set "objective='{\"name\": \"observation-value\", \"fn\": \"mymod:fn\"}'"). set_objective swaps it later.
    objective: str = "learned"
    # Observations the networks see per state: the last N, stacked by gymnasium's
    # FrameStackObservation outside the run's own wrappers (EfficientZero's stacked observations;
    # replay keeps one frame per state). 1: the current observation only. A property of the
    # agent's input, not of the environment: baselines on the same env see what they always saw.
    observation_history: int = 1
    # --- self-play
    num_envs: int = 8  # B envs stepped together; one batched search per step for all of them
    discount: float = DEFAULT_DISCOUNT
    # Visit-count temperature over training: [[fraction of the run, temperature], ...] (EfficientZero:
    # 1.0, then 0.5 after half the run, 0.25 after three quarters). Evaluation is always greedy.
    # pUCT only: Gumbel search acts by sequential halving (a temperature asked for with it is refused).
    temperature: List[List[float]] = field(default_factory=lambda: [[0.0, 1.0], [0.5, 0.5], [0.75, 0.25]])
    # Coverage off the training policy (agent/explore.py): this share of the self-play envs act
    # under the training objective plus a term of their own, weighted by explore_weight:
    # explore_family "hold-entry" (one observation entry held at a random value per episode),
    # "novelty" (distance from the observations seen so far; both need the observation decoder)
    # or "visit-count" (a learned value of an intrinsic reward, 1/sqrt(1 + visits) per real
    # transition, the auxiliary value head "explore"). Their states train the model, not
    # the policy, nor the value unless explore_trains_value. Off:
    # hold-entry at 0.25 cut the model's error off the training policy but did not raise the
    # transfer suite's dev scores (README, "Coverage off the training policy").
    explore_fraction: float = 0.0
    explore_weight: float = 1.0
    explore_family: str = "hold-entry"
    explore_trains_value: bool = False
    explore_discount: float = 0.99  # of the visit-count family's intrinsic returns (RND's intrinsic discount)
    # --- replay and targets
    replay_capacity: int = 100_000
    batch_size: int = 128
    unroll_steps: int = 5  # K
    td_steps: int = 5  # n of the n-step value target
    td_correction_interval: int = 5_000  # env steps of age per step of shorter horizon (0: off)
    # What the n-step value target bootstraps from at s_{t+h} (agent/targets.py): "value", the
    # target network's value there (EfficientZero); or "greedy-q", max_a r(s, a) + discount * V(s')
    # one model step ahead, the action chosen by the online network and priced by the target
    # network (n-step Q-learning's bootstrap with Double DQN's split, over the learned model as in
    # Value Prediction Networks). "value" learns the value of self-play's sampled actions, which
    # under a high visit temperature is the value of a policy that often errs; "greedy-q" that of
    # acting greedily after h steps.
    value_bootstrap: str = "value"
    priority_alpha: float = 0.6
    priority_beta: float = 0.4  # annealed linearly to 1 over the run
    reanalyze_fraction: float = 0.5  # share of policy targets re-searched with the target network
    # Reanalyze the batches of all training steps due after one vector step in one search (more
    # roots per search, far cheaper per root); their priorities are then sampled before the
    # earlier ones' updates. Off: one search per training step.
    batched_reanalyze: bool = False
    # Keep each reanalyzed policy target in replay and reuse it for the state's later samples
    # until the target network's next copy (a search with the same network and objective),
    # instead of searching the state each time it is sampled as EfficientZero does; those
    # searches then run without root noise (agent/reanalyze.py). On in CartPole-v1's and
    # LunarLander-v3's presets, where it was measured (README, "Choices measured"); elsewhere off
    # until measured there.
    reuse_reanalysis: bool = False
    # > 0: rewards are stored in replay clipped to [-reward_clip, reward_clip], so the learner's
    # targets see them clipped while episode returns and evaluations keep the game's score (the
    # Atari 100k convention; set by the Atari preset). 0: off. A user reward function (aux_values,
    # refit) is passed the environment's own reward in self-play but the clipped one when it is
    # read back from replay (refit).
    reward_clip: float = 0.0
    # --- learner
    replay_ratio: float = 0.25  # training steps per environment step
    learning_starts: int = 500  # environment steps collected before the first training step
    lr: float = 1e-3
    lr_warmup_steps: int = 200  # linear warmup, in training steps
    lr_schedule: str = "cosine"  # "cosine" (to lr_final_ratio * lr at the end of the run) or "constant"
    lr_final_ratio: float = 0.1
    weight_decay: float = 1e-4
    max_grad_norm: float = 5.0
    # How the learner runs its unroll's forward and backward: "compiled" (torch.compile: one fused
    # graph instead of hundreds of small ops; costs a compilation of tens of seconds at the first
    # training step), "eager", or "auto": compiled for an MLP model on the CPU when the run plans at
    # least LEARNER_COMPILE_MIN_STEPS training steps, where the saving outweighs the compilation
    # (README, "Speed"). The two round differently: the same seed and backend give the same run.
    learner_backend: str = "auto"
    target_update_interval: int = 100  # training steps between target-network copies
    value_loss_weight: float = 0.25  # EfficientZero's weights
    reward_loss_weight: float = 1.0
    policy_loss_weight: float = 1.0
    consistency_loss_weight: float = 2.0
    reconstruction_loss_weight: float = 1.0  # observation decoder (net.use_decoder), trained along the unroll
    terminal_loss_weight: float = 1.0  # terminal head (net.terminal_head), trained along the unroll
    # --- auxiliary value heads: [[NAME, "module:fn"], ...] (train.py --aux-value NAME --aux-reward module:fn).
    # Each fits a value network over latents to the n-step returns of fn(obs, action, reward, next_obs,
    # terminated) -> [B] on the same replay, without touching the agent's own networks; it is stored in
    # the checkpoint and plugged in with `--objective aux:NAME` (a LatentValue objective).
    aux_values: List[List[str]] = field(default_factory=list)
    aux_hidden: int = 64

    def __post_init__(self):
        if isinstance(self.net, dict):
            self.net = NetConfig(**self.net)
        if isinstance(self.search, dict):
            self.search = SearchConfig(**self.search)
        positive = ("observation_history", "num_envs", "replay_capacity", "batch_size", "unroll_steps", "td_steps",
                    "target_update_interval")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"AgentConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"AgentConfig.discount must be in (0, 1], got {self.discount}")
        if not 0.0 <= self.explore_fraction < 1.0:
            raise ValueError(f"AgentConfig.explore_fraction must be in [0, 1), got {self.explore_fraction}")
        if self.explore_family not in EXPLORE_FAMILIES:
            raise ValueError(f"AgentConfig.explore_family must be one of {EXPLORE_FAMILIES}, got {self.explore_family!r}")
        if not 0.0 < self.explore_discount <= 1.0:
            raise ValueError(f"AgentConfig.explore_discount must be in (0, 1], got {self.explore_discount}")
        if self.explore_weight <= 0:
            raise ValueError(f"AgentConfig.explore_weight must be > 0, got {self.explore_weight}")
        if self.reward_clip < 0:
            raise ValueError(f"AgentConfig.reward_clip must be >= 0 (0: off), got {self.reward_clip}")
        if not 0.0 <= self.reanalyze_fraction <= 1.0:
            raise ValueError(f"AgentConfig.reanalyze_fraction must be in [0, 1], got {self.reanalyze_fraction}")
        if self.replay_ratio <= 0:
            raise ValueError(f"AgentConfig.replay_ratio must be > 0, got {self.replay_ratio}")
        if self.learner_backend not in ("auto", "compiled", "eager"):
            raise ValueError(f"AgentConfig.learner_backend must be 'auto', 'compiled' or 'eager', "
                             f"got {self.learner_backend!r}")
        if self.value_bootstrap not in VALUE_BOOTSTRAPS:
            raise ValueError(f"AgentConfig.value_bootstrap must be one of {VALUE_BOOTSTRAPS}, got {self.value_bootstrap!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"AgentConfig.lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        for item in self.aux_values:
            if len(item) != 2 or not all(isinstance(x, str) and x for x in item) or ":" not in item[1]:
                raise ValueError(f"AgentConfig.aux_values must be [[NAME, 'module:fn'], ...], got {item!r}")
        if len({n for n, _ in self.aux_values}) != len(self.aux_values):
            raise ValueError(f"AgentConfig.aux_values has a NAME twice: {self.aux_values!r}")
        if not self.temperature or any(len(p) != 2 or p[1] <= 0 for p in self.temperature):
            raise ValueError(f"AgentConfig.temperature must be [[fraction, temperature > 0], ...], "
                             f"got {self.temperature!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["net"] = self.net.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AgentConfig":
        """Read `to_dict()`'s output back; settings that moved out of the agent's config (now
        options of the run) are dropped, so older checkpoints still load."""
        return apply_overrides(cls(), {k: v for k, v in flatten(d).items() if k not in RETIRED_KEYS})

    def history_wrappers(self) -> List[str]:
        """The wrapper that gives the networks `observation_history` observations (none for one)."""
        n = self.observation_history
        return [f"gymnasium.wrappers:FrameStackObservation(stack_size={n})"] if n > 1 else []

    def temperature_at(self, progress: float) -> float:
        """Visit temperature at `progress` (fraction of the run done)."""
        t = self.temperature[0][1]
        for start, temp in self.temperature:
            if progress >= start:
                t = temp
        return float(t)


# Settings that shape the networks, the replay or the data collected so far: a resumed run keeps
# them (changing one would not continue the same run). Everything else may change with --resume.
FIXED_ON_RESUME = ("net.", "observation_history", "num_envs", "explore_fraction", "explore_family", "explore_discount", "replay_capacity", "aux_values", "aux_hidden", "discount", "objective",
                   "reward_clip")

# Settings older checkpoints carry that are now options of a run (agent/runner.py), not the agent's.
RETIRED_KEYS = frozenset({"checkpoint_interval", "log_interval", "audit_episodes"})

# Preset per supported environment: a few overrides of the defaults above, nothing more (how each
# was chosen: README, "Presets").
PRESETS: Dict[str, Dict[str, Any]] = {
    # Two training steps per environment step: at one, some seeds stalled for want of a model that
    # predicts a ~14-step recovery off the policy's path (the cart drove off the track); at two, all
    # ten choosing seeds reached 475 within 10,000 steps (README, "Choices measured").
    "CartPole-v1": {"search.num_simulations": 50, "search.algorithm": "gumbel", "replay_ratio": 2.0,
                    "reuse_reanalysis": True},
    "Acrobot-v1": {"search.num_simulations": 25},
    # MountainCar's flag is found by explorers crediting a learned value of visit counts; their
    # searches pump energy only when the latents hold the velocity (a jointly trained decoder, each
    # entry read and reconstructed in its bounds). Gumbel's root rule: one step sooner or later to
    # the flag is a small difference in Q, which pUCT's visits barely see and the greedy agent
    # swung between evaluations. Chosen on seeds 5-7 (README, "Coverage off the training policy").
    "MountainCar-v0": {"search.num_simulations": 25, "search.algorithm": "gumbel", "td_steps": 10,
                       "temperature": [[0.0, 1.0]],
                       "net.obs_scale": "bounds", "net.decoder_joint": True, "explore_fraction": 0.5,
                       "explore_family": "visit-count", "explore_trains_value": True, "replay_ratio": 0.5},
    # LunarLander's landing pays 100 once the lander has rested a while (a timer the observation
    # does not show): with the default correction interval most value targets of a 200,000-step
    # run are one-step ones, the value learned the landing too slowly and a searching agent
    # hovered. EfficientZero's interval, 0.3 of the run, keeps five-step targets (README, "Speed").
    # The last 8 observations: the value of a lander at rest then depends on how long it has been
    # still, which one observation does not show; chosen on seeds 5-11 (README, "What the lander
    # does on the ground").
    "LunarLander-v3": {"net.latent_dim": 96, "net.hidden": [96], "net.value_support_size": 30,
                       "replay_capacity": 300_000, "lr": 1e-3, "reuse_reanalysis": True,
                       "td_correction_interval": 60_000, "observation_history": 8},
    # The testbeds (and their test splits' ids): episodes end at goals, so the terminal head is on
    # and a swapped objective's search stops at a predicted end instead of planning through it
    # (README, "Predicted episode ends"); the transfer suite and misgen train them with it. Their
    # returns stay within a few units, so the value and reward bins are 0.05 apart in h-space
    # (NetConfig.support_step): with MuZero's integer bins the greedy agent lost its own goal
    # mid-run (README, "Value resolution").
    **{env_id: {"net.terminal_head": True, "net.support_step": 0.05} for env_id in (
        "glasszero/Corridor-v0", "glasszero/CornerGoal-v0", "glasszero/SideEffects-v0",
        "glasszero/CorridorTest-v0", "glasszero/CornerGoalTest-v0", "glasszero/SideEffectsTest-v0")},
}


# Every MiniGrid/BabyAI id (envs/minigrid.py), and every full-view id of one, starts from these:
# the grid read one-hot (nets/grid.py) by the network family measured to learn DoorKey faster here
# (README, "MiniGrid"); the one-hot 7x7 grid is 980 inputs, so the per-network limit is raised to
# fit the first layer and the decoder's last one (about 67k parameters each at 64 wide). The
# learning settings are DoorKey-5x5's, chosen on its choosing seeds, for the whole family: one
# sparse reward at the goal, so a longer n-step target carries it back faster; 25 simulations as on
# Acrobot's and MountainCar's presets; self-play's returns fell from the random policy's (~0.4) to ~0 once
# the learned prior took over, and keeping the visit temperature at 1 and training twice as often
# per step is what learned DoorKey-5x5 (README, "MiniGrid").
GRID_DEFAULTS: Dict[str, Any] = {
    "net.grid_values": [11, 6, 4], "net.family": "mlp",
    "net.budget.max_network_params": 100_000, "net.budget.max_core_params": 150_000,
    "search.num_simulations": 25, "td_steps": 10, "replay_ratio": 0.5, "temperature": [[0.0, 1.0]],
    "net.support_step": 0.05,  # returns within 1: fine value bins, as the testbeds' (README, "Value resolution")
}


# Every Atari id (ALE/..., envs/atari.py) starts from EfficientZero's Atari 100k settings: its
# networks (NetConfig.atari: conv, 6x6x64 latent, 601-bin supports), 50 simulations, batch 256,
# rewards clipped to [-1, 1] for training, and its discount of 0.997 per emulator frame, which is
# 0.997^4 per agent step (4 frames skipped). Where it differs from EfficientZero: envs/atari.py.
def atari_defaults() -> Dict[str, Any]:
    return {**flatten({"net": NetConfig.atari().to_dict()}), "search.num_simulations": 50, "batch_size": 256,
            "reward_clip": 1.0, "replay_capacity": 100_000, "discount": 0.997 ** 4}


def preset(env_id: str) -> AgentConfig:
    """The preset for `env_id`, or the defaults for an environment without one."""
    from envs.atari import is_atari_env  # neither imports its package: they read the id
    from envs.minigrid import is_grid_env
    base = GRID_DEFAULTS if is_grid_env(env_id) else atari_defaults() if is_atari_env(env_id) else {}
    return apply_overrides(AgentConfig(), {**base, **PRESETS.get(env_id, {})})


# ---------------------------------------------------------------------------- overrides
def flatten(d: dict, prefix: str = "") -> Dict[str, Any]:
    """{'search': {'num_simulations': 25}} -> {'search.num_simulations': 25}."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _fields(obj) -> Dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check (and gently convert) `value` against the field's type; refuse a mismatch clearly."""
    origin = typing.get_origin(hint) or hint
    if origin in (int, float) and isinstance(value, str):
        try:  # YAML 1.1 reads "3e-3" as a string
            value = origin(value)
        except ValueError:
            pass
    if origin is bool:
        ok = isinstance(value, bool)
    elif origin is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif origin is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif origin is str:
        ok = isinstance(value, str)
    elif origin in (list, tuple):
        ok = isinstance(value, (list, tuple))
        value = origin(value) if ok else value
    else:
        ok = True
    if not ok:
        name = getattr(hint, "__name__", str(hint))
        raise ValueError(f"config key {key!r} expects {name}, got {value!r}")
    return value


def apply_overrides(config: AgentConfig, overrides: Dict[str, Any]) -> AgentConfig:
    """A new config with dotted-key overrides applied (values already parsed) and re-validated."""
    d = config.to_dict()
    for key, value in flatten(overrides).items():
        obj, node, parts = config, d, key.split(".")
        for i, part in enumerate(parts):
            fields = _fields(obj)
            if part not in fields:
                where = ".".join(parts[:i]) or "the agent config"
                close = difflib.get_close_matches(part, list(fields), n=3)
                hint = f" Did you mean {', '.join('.'.join(parts[:i] + [c]) for c in close)}?" if close else ""
                raise ValueError(f"unknown config key {key!r}: {where} has no setting {part!r}.{hint} "
                                 f"Known: {', '.join(sorted(fields))}")
            if i == len(parts) - 1:
                if dataclasses.is_dataclass(getattr(obj, part)):
                    raise ValueError(f"config key {key!r} is a group of settings; set its keys one by one "
                                     f"(e.g. {key}.{next(iter(_fields(getattr(obj, part))))}=...)")
                node[part] = _coerce(key, value, fields[part])
            else:
                obj, node = getattr(obj, part), node[part]
                if not dataclasses.is_dataclass(obj):
                    raise ValueError(f"config key {key!r}: {'.'.join(parts[:i + 1])} is not a group of settings")
    net = d.pop("net")
    net["budget"] = dict(net["budget"])
    return AgentConfig(net=NetConfig(**net), search=SearchConfig(**d.pop("search")), **d)


def resume_overrides(config: AgentConfig, overrides: Dict[str, Any]) -> AgentConfig:
    """`config` with the settings given on resume applied; settings a resumed run must keep
    (FIXED_ON_RESUME) are refused by name when they would change."""
    changed = apply_overrides(config, overrides)
    refuse_ignored_settings(changed, flatten(overrides))
    old, new = flatten(config.to_dict()), flatten(changed.to_dict())
    fixed = sorted(k for k in new if new[k] != old[k] and k.startswith(FIXED_ON_RESUME))
    if fixed:
        raise ValueError(f"--resume keeps the settings that shape the networks and the data collected so far; "
                         f"cannot change {', '.join(fixed)} (start a new run for that)")
    return changed


def parse_set(items: Iterable[str]) -> Dict[str, Any]:
    """['search.num_simulations=25', 'net.hidden=[64,64]'] -> {key: YAML-parsed value}."""
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value (e.g. search.num_simulations=25), got {item!r}")
        out[key.strip()] = _yaml_value(item, raw) if raw.strip() else ""
    return out


def _yaml_value(item: str, raw: str) -> Any:
    """One --set value read as YAML, or a ValueError naming the item and what YAML expected."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ValueError(f"--set {item!r}: the value {raw!r} could not be read as YAML ({problem}). Values are "
                         f"YAML: a number (25, 3e-3), true/false, a list with its closing bracket ([64, 64]), "
                         f"or a string - in quotes if it holds [ ] {{ }} , : or #") from e


def load_yaml(path: str | Path) -> Dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
    return flatten(data)


def resolve_config(env_id: str, config_file: Optional[str] = None, sets: Iterable[str] = (),
                   overrides: Optional[Dict[str, Any]] = None) -> AgentConfig:
    """Preset for env_id <- YAML file <- --set items <- overrides (a dict of dotted keys)."""
    layers = [load_yaml(config_file) if config_file else {}, parse_set(sets), flatten(overrides or {})]
    config = preset(env_id)
    for layer in layers:
        config = apply_overrides(config, layer)
    refuse_ignored_settings(config, {k for layer in layers for k in flatten(layer)})
    return config


def refuse_ignored_settings(config: AgentConfig, asked: Iterable[str]) -> None:
    """Refuse a setting the user asked for (`asked`: its dotted keys) that `config` would ignore.
    A preset's own schedule may sit unused under Gumbel; one the user asks for must not."""
    asked = set(asked)
    if config.search.algorithm == "puct" and "search.gumbel_max_considered" in asked:
        raise ValueError("search.gumbel_max_considered has no effect with search.algorithm='puct' (it sizes "
                         "Gumbel's sequential halving): drop it, or add --set search.algorithm=gumbel.")
    if config.search.algorithm == "puct" and config.search.trains_on_visits():
        ignored = sorted({"search.gumbel_c_visit", "search.gumbel_c_scale"} & asked)
        if ignored:
            raise ValueError(f"{ignored[0]} has no effect with search.algorithm='puct' training on visit counts (it "
                             f"scales the improved policy's sigma): drop it, or add --set "
                             f"search.policy_target=improved (or search.algorithm=gumbel).")
    if config.search.algorithm == "gumbel" and "temperature" in asked:
        raise ValueError(f"temperature {config.temperature!r} has no effect with search.algorithm='gumbel': "
                         f"Gumbel search acts by sequential halving under its own Gumbel noise, not by sampling "
                         f"visit counts. Drop the temperature setting, or add --set search.algorithm=puct to "
                         f"act on visit counts at that temperature.")
