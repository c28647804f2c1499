"""Stable-Baselines3 PPO / DQN / A2C behind the agent protocol, with rl-baselines3-zoo settings.

    model = PPOBaseline("CartPole-v1", seed=0, run_dir="runs/ppo_CartPole-v1_s0")
    model.learn(20_000, callback=EvalCallback(...))       # the same callbacks as EZAgent
    action, _ = model.predict(obs, deterministic=True)
    model.save("runs/ppo_CartPole-v1_s0/model.zip");  Baseline.load(".../model.zip")

Environments come from `envs.make(check=False)`, so the same ids, `--env-module` and `--wrapper`
work as for the planner. The checkpoint is SB3's zip with two extra members: glasszero metadata
(what to rebuild the env and the algorithm from) and the VecNormalize statistics, both JSON, so one
file restores the policy exactly as it acted during training. Loading reads data only: the algorithm
is rebuilt from the metadata's hyperparameters and gets the zip's weights through SB3's
`set_parameters` (torch's weights_only loader); SB3's own `load` would unpickle objects from the zip.
"""
from __future__ import annotations

import functools
import json
import os
import zipfile
from pathlib import Path
from typing import ClassVar, Dict, Optional, Sequence, Type

import gymnasium as gym
import numpy as np
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

import envs
from agent.baselines.zoo import ResolvedHyperparams, zoo_hyperparams
from agent.callbacks import ProgressBarCallback, as_callback
from agent.protocol import Agent
from common.files import atomic_path
from nets import resolve_device

_META = "glasszero_baseline.json"
_VECNORM = "glasszero_vecnormalize.json"

# The action spaces each SB3 algorithm accepts (from their constructors' supported_action_spaces).
_ON_POLICY_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def wrapper_path(w) -> str:
    """Wrappers are stored by import path so that a checkpoint can rebuild its environment."""
    return w if isinstance(w, str) else f"{w.__module__}:{w.__qualname__}"


class Baseline(Agent):
    """A Stable-Baselines3 algorithm trained and evaluated under glasszero's protocol."""

    sb3_class: ClassVar[Type[BaseAlgorithm]]
    action_spaces: ClassVar[tuple] = _ON_POLICY_SPACES
    CHECKPOINT = "model.zip"
    RESUME = "model.zip"

    def __init__(self, env, config: Optional[dict] = None, seed: int = 0, device: str = "auto",
                 run_dir: Optional[str | os.PathLike] = None, *, env_module: Optional[str] = None,
                 wrappers: Sequence[str | type] = ()):
        """`config`: zoo keys over the zoo entry for (algo, env), in the zoo's spelling."""
        device = resolve_device(device)  # SB3 itself would fall back to the CPU without a word
        self.env_id, self.seed = env, int(seed)
        self.env_module, self.wrappers = env_module, [wrapper_path(w) for w in wrappers]
        self.run_dir = Path(run_dir) if run_dir is not None else None
        probe = envs.make(env, None, wrappers=self.wrappers, env_module=env_module, check=False)
        try:
            if not isinstance(probe.action_space, self.action_spaces):
                names = ", ".join(c.__name__ for c in self.action_spaces)
                raise envs.NotApplicable(f"{self.algo} does not apply to {env}: its action space is "
                                         f"{probe.action_space}, but {self.algo} only supports {names} "
                                         f"action spaces.")
        finally:
            probe.close()
        self.hyperparams: ResolvedHyperparams = zoo_hyperparams(self.algo, env, config)
        venv = self._make_venv(self.hyperparams.n_envs)
        if self.hyperparams.normalize_kwargs is not None:
            venv = VecNormalize(venv, **self.hyperparams.normalize_kwargs)
        self.vec_normalize: Optional[VecNormalize] = venv if isinstance(venv, VecNormalize) else None
        self.model: BaseAlgorithm = self.sb3_class(self.hyperparams.policy, venv, seed=self.seed,
                                                   device=device, verbose=0, **self.hyperparams.algo_kwargs)
        self._custom_logger = False

    def _make_venv(self, n_envs: int) -> VecEnv:
        # make_vec_env seeds copy i with seed + i and adds the Monitor wrapper SB3 reads episodes from.
        factory = functools.partial(envs.make, self.env_id, None, wrappers=self.wrappers,
                                    env_module=self.env_module, check=False)
        return make_vec_env(factory, n_envs=n_envs, seed=self.seed)

    # -- the agent protocol ------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for name, p in self.model.policy.named_parameters()
                   if not name.startswith("q_net_target"))

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True):
        """SB3's predict on raw observations (normalized here with the frozen training statistics)."""
        if self.vec_normalize is not None:
            observation = self.vec_normalize.normalize_obs(observation)
        return self.model.predict(observation, state, episode_start, deterministic)

    def learn(self, total_timesteps: int, callback=None, progress_bar: bool = False) -> "Baseline":
        """Train `total_timesteps` more env steps, stopping at exactly that budget; `callback`s see
        this object as their model (its predict normalizes observations as in training)."""
        if not self._custom_logger:
            self.model.set_logger(_default_logger(self.run_dir))
        ours = as_callback(callback, ProgressBarCallback(f"{self.algo} {self.env_id} s{self.seed}")
                           if progress_bar else None)
        # reset_num_timesteps=False: SB3 counts the budget on top of the steps already taken.
        self.model.learn(int(total_timesteps), callback=[_StopAtBudget(), _Forward(ours, self)],
                         reset_num_timesteps=False)
        return self

    @property
    def logger(self) -> Logger:
        return self.model.logger

    def set_logger(self, logger: Logger) -> None:
        self.model.set_logger(logger)
        self._custom_logger = True

    def get_env(self):
        return self.model.get_env()

    def progress_postfix(self) -> dict:
        episodes = self.model.ep_info_buffer
        return {"ret": f"{np.mean([e['r'] for e in episodes]):.1f}"} if episodes else {}

    @classmethod
    def check_config(cls, env_id: str, config: Optional[dict], resuming: bool = False) -> None:
        zoo_hyperparams(cls.algo, env_id, config)

    def hyperparameters(self) -> dict:
        return {"hyperparameters": self.hyperparams.raw, "hyperparameters_source": self.hyperparams.source}

    def summary(self) -> str:
        return (f"{self.algo} on {self.env_id} (seed {self.seed}), {self.num_parameters:,} parameters; "
                f"{self.hyperparams.source}")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint atomically (temp zip in the same dir, then rename); returns its path."""
        path = Path(path)
        if path.suffix != ".zip":  # SB3 appends .zip too; do it here so the rename target matches
            path = path.with_name(path.name + ".zip")
        with atomic_path(path, suffix=".zip") as tmp:
            self.model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as z:
                z.writestr(_META, json.dumps(self._metadata(), default=str, indent=1))
                if self.vec_normalize is not None:
                    z.writestr(_VECNORM, json.dumps(_normalization_stats(self.vec_normalize)))
        return path

    def save_resume(self, path: str | os.PathLike) -> Path:
        return self.save(path)

    def _metadata(self) -> dict:
        return {"algo": self.algo, "env_id": self.env_id, "seed": self.seed, "env_module": self.env_module,
                "wrappers": self.wrappers, "n_envs": self.hyperparams.n_envs,
                "hyperparameters": self.hyperparams.raw, "hyperparameters_source": self.hyperparams.source,
                "num_timesteps": self.num_timesteps, "n_updates": int(getattr(self.model, "_n_updates", 0))}

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto",
             run_dir: Optional[str | os.PathLike] = None) -> "Baseline":
        """Restore a checkpoint written by `save`, with its environment, ready to predict or learn on.
        Called on `Baseline` itself, the class is the one the checkpoint names."""
        path, device = Path(path), resolve_device(device)
        if not path.exists():
            raise FileNotFoundError(f"No baseline checkpoint at {path} (expected the model.zip of a run).")
        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read(_META))
                stats = json.loads(z.read(_VECNORM)) if _VECNORM in z.namelist() else None
        except (zipfile.BadZipFile, KeyError, ValueError) as e:
            raise ValueError(f"{path} is not a glasszero baseline checkpoint ({e}).") from e
        klass = _BY_NAME.get(meta.get("algo"))
        if klass is None or not issubclass(klass, cls):
            raise ValueError(f"{path} is a checkpoint of {meta.get('algo')!r}, not of {cls.__name__}")
        self = klass(meta["env_id"], config=meta["hyperparameters"], seed=meta["seed"], device=device,
                     run_dir=run_dir, env_module=meta["env_module"], wrappers=meta["wrappers"])
        self.hyperparams.source = meta["hyperparameters_source"]
        self.model.set_parameters(str(path), exact_match=True, device=device)
        self.model.num_timesteps = int(meta.get("num_timesteps", 0))
        self.model._n_updates = int(meta.get("n_updates", 0))
        if (stats is None) != (self.vec_normalize is None):
            raise ValueError(f"{path}: its observation normalization does not match its hyperparameters")
        if stats is not None:
            _load_normalization_stats(self.vec_normalize, stats)
        return self


def _normalization_stats(vec_normalize: VecNormalize) -> dict:
    """VecNormalize's running statistics as plain data (JSON)."""
    def rms(r):
        return {"mean": np.asarray(r.mean).tolist(), "var": np.asarray(r.var).tolist(), "count": float(r.count)}
    return {"obs_rms": rms(vec_normalize.obs_rms), "ret_rms": rms(vec_normalize.ret_rms)}


def _load_normalization_stats(vec_normalize: VecNormalize, stats: dict) -> None:
    for name in ("obs_rms", "ret_rms"):
        target, saved = getattr(vec_normalize, name), stats[name]
        target.mean = np.asarray(saved["mean"], dtype=np.float64).reshape(np.shape(target.mean))
        target.var = np.asarray(saved["var"], dtype=np.float64).reshape(np.shape(target.var))
        target.count = saved["count"]


class PPOBaseline(Baseline):
    algo = "ppo"
    sb3_class = PPO


class DQNBaseline(Baseline):
    algo = "dqn"
    sb3_class = DQN
    action_spaces = (gym.spaces.Discrete,)


class A2CBaseline(Baseline):
    algo = "a2c"
    sb3_class = A2C


_BY_NAME: Dict[str, Type[Baseline]] = {c.algo: c for c in (PPOBaseline, DQNBaseline, A2CBaseline)}


def _default_logger(run_dir: Optional[Path]) -> Logger:
    # SB3's own scalars (rollout/*, train/*) go into the run dir itself, next to ours, so
    # TensorBoard shows one run; no stdout tables.
    return configure(str(run_dir), ["tensorboard"]) if run_dir is not None else Logger(folder=None, output_formats=[])


class _Forward(BaseCallback):
    """Runs glasszero-level callbacks inside SB3's loop with the Baseline (not the bare SB3 model)
    as their model, so that they act through its observation normalization."""

    def __init__(self, inner: BaseCallback, agent: Baseline):
        super().__init__()
        self.inner, self.agent = inner, agent

    def _init_callback(self) -> None:
        self.inner.init_callback(self.agent)

    def _on_training_start(self) -> None:
        self.inner.on_training_start(self.locals, self.globals)

    def _on_step(self) -> bool:
        self.inner.update_locals(self.locals)
        return self.inner.on_step()

    def _on_training_end(self) -> None:
        self.inner.on_training_end()


class _StopAtBudget(BaseCallback):
    """Stop at exactly `total_timesteps` env steps.

    SB3 otherwise finishes the current rollout (PPO on CartPole: 8 envs x 32 steps), overshooting
    the budget every algorithm in a comparison is meant to share. The cut-off partial rollout is
    not trained on.
    """

    def _on_training_start(self) -> None:
        self.budget = self.locals["total_timesteps"]

    def _on_step(self) -> bool:
        return self.num_timesteps < self.budget
