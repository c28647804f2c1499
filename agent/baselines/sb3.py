"""Stable-Baselines3 PPO / DQN / A2C behind the same API as EZAgent, with rl-baselines3-zoo settings.

    model = Baseline("ppo", "CartPole-v1", seed=0, tensorboard_log="runs/ppo_CartPole-v1_s0")
    model.learn(20_000, callback=PeriodicEval(...))      # callback(env_steps, act), like EZAgent
    action, _ = model.predict(obs, deterministic=True)
    model.save("runs/ppo_CartPole-v1_s0/model.zip");  Baseline.load(".../model.zip")

Environments come from `envs.make(check=False)`, so the same ids, `--env-module` and `--wrapper`
work as for the planner. The checkpoint is SB3's zip with two extra members: glasszero metadata
(what to rebuild the env from) and the VecNormalize statistics, so one file restores the policy
exactly as it acted during training.
"""
from __future__ import annotations

import functools
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from tqdm.auto import tqdm

import envs
from agent.checkpoint import atomic_path
from agent.zoo_hyperparams import ResolvedHyperparams, resolve

_CLASSES: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "dqn": DQN, "a2c": A2C}
ALGOS = frozenset(_CLASSES)

# The action spaces each SB3 algorithm accepts (from their constructors' supported_action_spaces).
_ON_POLICY_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
_ACTION_SPACES = {"ppo": _ON_POLICY_SPACES, "a2c": _ON_POLICY_SPACES, "dqn": (gym.spaces.Discrete,)}

_META = "glasszero_baseline.json"
FPS_LOG_INTERVAL = 200  # env steps between time/fps scalars (ez's default log_interval)
_VECNORM = "glasszero_vecnormalize.pkl"


class NotApplicable(ValueError):
    """The algorithm cannot act in this environment (e.g. DQN on a continuous action space)."""


def wrapper_path(w) -> str:
    """Wrappers are stored by import path so that a checkpoint can rebuild its environment."""
    return w if isinstance(w, str) else f"{w.__module__}:{w.__qualname__}"


def _check_applicable(algo: str, env_id: str, action_space: gym.Space) -> None:
    if not isinstance(action_space, _ACTION_SPACES[algo]):
        names = ", ".join(c.__name__ for c in _ACTION_SPACES[algo])
        raise NotApplicable(f"{algo} does not apply to {env_id}: its action space is {action_space}, "
                            f"but {algo} only supports {names} action spaces.")


class Baseline:
    """A Stable-Baselines3 algorithm trained and evaluated under glasszero's protocol."""

    def __init__(self, algo: str, env_id: str, seed: int = 0, device: str = "auto",
                 tensorboard_log: Optional[str | os.PathLike] = None, hyperparams: Optional[dict] = None,
                 env_module: Optional[str] = None, wrappers: Sequence[str | type] = ()):
        """`hyperparams` override the zoo entry for (algo, env_id) key by key, in the zoo's spelling."""
        algo = algo.lower()
        if algo not in _CLASSES:
            raise ValueError(f"Unknown baseline {algo!r}; choose one of {', '.join(sorted(ALGOS))}.")
        self.algo, self.env_id, self.seed = algo, env_id, int(seed)
        self.env_module, self.wrappers = env_module, [wrapper_path(w) for w in wrappers]
        self.tensorboard_log = tensorboard_log
        probe = envs.make(env_id, None, wrappers=self.wrappers, env_module=env_module, check=False)
        try:
            _check_applicable(algo, env_id, probe.action_space)
        finally:
            probe.close()
        self.hyperparams: ResolvedHyperparams = resolve(algo, env_id, hyperparams)
        venv = self._make_venv(self.hyperparams.n_envs)
        if self.hyperparams.normalize_kwargs is not None:
            venv = VecNormalize(venv, **self.hyperparams.normalize_kwargs)
        self.vec_normalize: Optional[VecNormalize] = venv if isinstance(venv, VecNormalize) else None
        self.model: BaseAlgorithm = _CLASSES[algo](
            self.hyperparams.policy, venv, seed=self.seed, device=device, verbose=0,
            **self.hyperparams.algo_kwargs)

    def _make_venv(self, n_envs: int) -> VecEnv:
        # make_vec_env seeds copy i with seed + i and adds the Monitor wrapper SB3 reads episodes from.
        factory = functools.partial(envs.make, self.env_id, None, wrappers=self.wrappers,
                                    env_module=self.env_module, check=False)
        return make_vec_env(factory, n_envs=n_envs, seed=self.seed)

    # -- SB3-style API ---------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of the acting/learning networks (DQN's target copy not counted)."""
        return sum(p.numel() for name, p in self.model.policy.named_parameters()
                   if not name.startswith("q_net_target"))

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True):
        """SB3's predict on raw observations (normalized here with the frozen training statistics)."""
        if self.vec_normalize is not None:
            observation = self.vec_normalize.normalize_obs(observation)
        return self.model.predict(observation, state, episode_start, deterministic)

    def learn(self, total_timesteps: int, progress_bar: bool = True,
              callback: Optional[Callable[[int, Callable], object]] = None,
              reset_num_timesteps: bool = True) -> "Baseline":
        """Train for `total_timesteps` more env steps; `callback(env_steps, act)` runs after each step."""
        self.model.set_logger(self._sb3_logger())
        callbacks: list[BaseCallback] = [_StopAtBudget(), _FpsLogger(FPS_LOG_INTERVAL)]
        if callback is not None:
            callbacks.append(_HookCallback(callback, self._act))
        if progress_bar:
            callbacks.append(_TqdmProgress(f"{self.algo} {self.env_id} s{self.seed}"))
        self.model.learn(int(total_timesteps), callback=CallbackList(callbacks),
                         reset_num_timesteps=reset_num_timesteps)
        return self

    def _act(self, obs: np.ndarray) -> np.ndarray:
        return self.predict(obs, deterministic=True)[0]

    def _sb3_logger(self) -> Logger:
        # SB3's own scalars (time/fps, rollout/*, train/*) go into the run dir itself, next to
        # eval/* from the RunLogger, so TensorBoard shows one run; no stdout tables.
        if self.tensorboard_log is None:
            return Logger(folder=None, output_formats=[])
        return configure(str(self.tensorboard_log), ["tensorboard"])

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
                    z.writestr(_VECNORM, pickle.dumps(self.vec_normalize))
        return path

    def _metadata(self) -> dict:
        return {"algo": self.algo, "env_id": self.env_id, "seed": self.seed, "env_module": self.env_module,
                "wrappers": self.wrappers, "n_envs": self.hyperparams.n_envs,
                "hyperparameters": self.hyperparams.raw, "hyperparameters_source": self.hyperparams.source}

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto",
             tensorboard_log: Optional[str | os.PathLike] = None) -> "Baseline":
        """Restore a checkpoint written by `save`, with its environment, ready to predict or learn on."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No baseline checkpoint at {path} (expected the model.zip of a run).")
        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read(_META))
                vec_normalize = pickle.loads(z.read(_VECNORM)) if _VECNORM in z.namelist() else None
        except (zipfile.BadZipFile, KeyError) as e:
            raise ValueError(f"{path} is not a glasszero baseline checkpoint ({e}).") from e
        self = cls.__new__(cls)
        self.algo, self.env_id, self.seed = meta["algo"], meta["env_id"], meta["seed"]
        self.env_module, self.wrappers = meta["env_module"], meta["wrappers"]
        self.tensorboard_log = tensorboard_log
        self.hyperparams = ResolvedHyperparams(algo_kwargs={}, n_envs=meta["n_envs"],
                                               raw=meta["hyperparameters"],
                                               source=meta["hyperparameters_source"])
        venv = self._make_venv(meta["n_envs"])
        if vec_normalize is not None:
            vec_normalize.set_venv(venv)
            venv = vec_normalize
        self.vec_normalize = vec_normalize
        self.model = _CLASSES[self.algo].load(path, env=venv, device=device)
        return self


class _HookCallback(BaseCallback):
    """Calls a PeriodicEval-like `hook(env_steps, act)` after every vectorized env step."""

    def __init__(self, hook: Callable[[int, Callable], object], act: Callable[[np.ndarray], np.ndarray]):
        super().__init__()
        self.hook, self.act = hook, act

    def _on_step(self) -> bool:
        self.hook(self.num_timesteps, self.act)
        return True


class _StopAtBudget(BaseCallback):
    """Stop at exactly `total_timesteps` env steps.

    SB3 otherwise finishes the current rollout (PPO on CartPole: 8 envs x 32 steps), overshooting
    the budget every algorithm in a comparison is meant to share. The cut-off partial rollout is
    not trained on.
    """

    def _on_training_start(self) -> None:
        self.budget = self.locals["total_timesteps"]  # includes steps done before a resumed run

    def _on_step(self) -> bool:
        return self.num_timesteps < self.budget


class _FpsLogger(BaseCallback):
    """Writes `time/fps` (env steps per second of this session) every `interval` env steps.

    SB3 records time/fps only when it dumps its logs (A2C: every 100 updates, i.e. 4,000 CartPole
    steps), so short runs would lack the tag the planner agent writes; this makes it periodic.
    """

    def __init__(self, interval: int):
        super().__init__()
        self.interval = int(interval)

    def _on_training_start(self) -> None:
        import time
        self._clock, self._start_time = time.time, time.time()
        self._start_steps = self.model.num_timesteps
        self._next = (self._start_steps // self.interval + 1) * self.interval

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            fps = (self.num_timesteps - self._start_steps) / max(1e-9, self._clock() - self._start_time)
            self.logger.record("time/fps", fps)
            self.logger.dump(step=self.num_timesteps)
            self._next = (self.num_timesteps // self.interval + 1) * self.interval
        return True


class _TqdmProgress(BaseCallback):
    """SB3's ProgressBarCallback needs `rich`; this is the same bar on plain tqdm."""

    def __init__(self, desc: str):
        super().__init__()
        self.desc = desc

    def _on_training_start(self) -> None:
        # total_timesteps already includes steps done before a resumed run; show only this session's
        self.pbar = tqdm(total=self.locals["total_timesteps"] - self.model.num_timesteps,
                         desc=self.desc, unit="step", leave=False, dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.pbar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.pbar.close()
