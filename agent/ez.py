"""EZAgent: the EfficientZero-style agent behind Stable-Baselines3's learn / predict / save / load.

    agent = EZAgent("CartPole-v1", seed=0)
    agent.learn(20_000, callback=PeriodicEval(...))       # callback(env_steps, act)
    action, _ = agent.predict(obs, deterministic=True)     # greedy search, no root noise
    agent.save("model.pt"); agent = EZAgent.load("model.pt")

The training loop, top to bottom: every iteration steps B envs once with one batched search
(agent/selfplay.py), then takes `replay_ratio * B` gradient steps (agent/learner.py) on prioritized
replay (agent/replay.py) with n-step targets (agent/targets.py) and reanalyzed policies
(agent/reanalyze.py). Every search maximizes `agent.objective`, which can be swapped at any time.
"""
from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Callable, Optional, Sequence

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

import envs
from agent.checkpoint import atomic_save, load as load_checkpoint
from agent.config import AgentConfig, preset
from agent.learner import Learner
from agent.logger import RunLogger
from agent.replay import Replay
from agent.selfplay import SelfPlay
from nets import build_model, format_capacity_report, resolve_device
from planners.search import search
from planners.config import SearchConfig
from planners.objectives import LatentValue, Learned, Objective, ObjectiveNotRestorable, objective_from_spec
from planners.plugins import load_callable, validate

RESUME_FILE = "resume.pt"


class EZAgent:
    def __init__(self, env, config: Optional[AgentConfig | dict] = None, seed: int = 0,
                 device: str = "auto", tensorboard_log: Optional[str | os.PathLike] = None, *,
                 env_module: Optional[str] = None, wrappers: Sequence[str | type] = ()):
        """`env`: a gymnasium id, or an env whose `spec.id` names one (the agent makes its own copies,
        with `wrappers` applied in order). `config`: None for the preset of that env."""
        self.env_id = _env_id(env)
        self.env_module = env_module
        self.wrappers = [w if isinstance(w, str) else f"{w.__module__}:{w.__qualname__}" for w in wrappers]
        probe = envs.make(self.env_id, None, wrappers=self.wrappers, env_module=env_module)
        self.obs_shape = tuple(probe.observation_space.shape)
        self.obs_dtype = probe.observation_space.dtype
        self.num_actions = int(probe.action_space.n)
        probe.close()
        if config is None:
            config = preset(self.env_id)
        elif isinstance(config, dict):
            config = AgentConfig.from_dict(config)
        self.config = config
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.tensorboard_log = Path(tensorboard_log) if tensorboard_log is not None else None

        torch.manual_seed(self.seed)
        self.model = build_model(self.obs_shape, self.num_actions, config.net, self.device).eval()
        self.learner = Learner(self.model, config)
        self.objective: Objective = Learned(config.discount)
        if config.objective != "learned":
            self.set_objective(config.objective)
        self.rng = np.random.default_rng(self.seed)  # search noise, action sampling, replay sampling
        self._act_rng = np.random.default_rng(self.seed + 1)  # stochastic predict() outside training
        self.num_timesteps = 0
        self.replay: Optional[Replay] = None  # made on the first learn(): acting needs none
        self._selfplay: Optional[SelfPlay] = None
        self._train_credit = 0.0  # fractional training steps owed (replay_ratio * env steps)
        self.last_audit: Optional[dict] = None  # the audit run at the end of the last learn()

    # ------------------------------------------------------------------ acting
    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """Actions for one observation or a batch, as Stable-Baselines3's predict: (actions, None).

        deterministic=True: the most visited root action of a search without root noise (what
        evaluation uses); False: a sample from the visit counts of a search with noise.
        """
        obs = np.asarray(observation, dtype=self.obs_dtype)
        single = obs.shape == self.obs_shape
        if single:
            obs = obs[None]
        elif obs.shape[1:] != self.obs_shape:
            raise ValueError(f"predict expects an observation of shape {self.obs_shape} or a batch "
                             f"[N, {', '.join(map(str, self.obs_shape))}], got {obs.shape}")
        result = self._search(obs, deterministic)
        actions = result.action.astype(np.int64)
        return (actions[0] if single else actions), None

    def _search(self, obs: np.ndarray, deterministic: bool):
        # A deterministic search gets a fresh generator so that it is a pure function of obs.
        rng = np.random.default_rng(0) if deterministic else self._act_rng
        with torch.no_grad():
            root = self.model.initial_inference(obs)
            return search(self.model, self.objective, root, self.config.search, rng=rng,
                          add_noise=not deterministic, deterministic=deterministic)

    def explain(self, observation) -> dict:
        """What one greedy search considered at `observation` (agent/explain.py): the root table
        (visits, prior, predicted reward, Q and its parts), the principal variation with predicted
        observations when the model has a decoder, and the objective; 'text' renders it."""
        from agent.explain import explain, format_explanation
        d = explain(self, observation)
        return {**d, "text": format_explanation(d)}

    def set_objective(self, objective: Objective | str | dict) -> None:
        """What every later search maximizes (acting, self-play and reanalyze); no retraining.
        'aux:NAME' plugs in the auxiliary value head NAME trained with the agent (config.aux_values)."""
        named = self.named_objectives()
        if isinstance(objective, str) and objective.startswith("aux:") and objective not in named:
            raise ValueError(f"objective {objective!r}: this agent has no auxiliary value head of that name "
                             f"(it has: {', '.join(named) or 'none'}; train one with train.py --aux-value NAME "
                             f"--reward module:fn)")
        objective = named[objective] if isinstance(objective, str) and objective in named else \
            objective_from_spec(objective, discount=self.config.discount)
        validate(objective, self.model, self.obs_shape)
        self.objective = objective

    def named_objectives(self) -> dict:
        """Objectives this agent carries by name: 'aux:NAME' -> LatentValue(its aux value head)."""
        out = {}
        for name, head in self.learner.aux_heads.items():
            obj = LatentValue(head, discount=self.config.discount)
            obj.ref = obj.fn.name = f"aux:{name}"  # stored in checkpoints as this name, restored by it
            out[f"aux:{name}"] = obj
        return out

    def _aux_objective_from_spec(self, spec) -> Optional[Objective]:
        if isinstance(spec, dict) and spec.get("name") == "latent-value":
            ref = (spec.get("module") or {}).get("ref") or ""
            if ref.startswith("aux:") and ref in self.named_objectives():
                obj = self.named_objectives()[ref]
                obj.with_reward = bool(spec.get("with_reward", False))
                return obj
        return None

    def set_prior(self, prior: str) -> None:
        """The learned prior's weight in selection: 'learned', 'uniform' or 'mixed(alpha)'."""
        self.config.search = dataclasses.replace(self.config.search, prior=prior)

    def capacity_report(self) -> str:
        return format_capacity_report(self.model.capacity_report())

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------ training
    def learn(self, total_timesteps: int, progress_bar: bool = True,
              callback: Optional[Callable[[int, Callable], object]] = None) -> "EZAgent":
        """Train for `total_timesteps` more environment steps. `callback(env_steps, act)` runs after
        every vector step, with `act(obs_batch) -> actions` the greedy policy (e.g. PeriodicEval);
        returning False stops training early (as a Stable-Baselines3 callback)."""
        c = self.config
        B = c.num_envs
        if self._selfplay is None:
            self._start_selfplay()
        end = self.num_timesteps + int(total_timesteps)
        # Schedules (temperature, beta, LR) run over the whole run, so a resumed run continues them.
        self.learner.planned_steps = max(1, int((end - c.learning_starts) * c.replay_ratio))
        logger = RunLogger(self.tensorboard_log, verbose=False) if self.tensorboard_log else None
        tqdm.write(f"EZAgent on {self.env_id} (seed {self.seed}, {self.device}), "
                   f"{self.num_parameters:,} parameters\nobjective: {self.objective.describe()} "
                   f"(prior {c.search.prior})\n{self.capacity_report()}")
        act = lambda obs: self.predict(obs, deterministic=True)[0]  # noqa: E731
        bar = tqdm(total=end - self.num_timesteps, disable=not progress_bar, unit="step",
                   desc=f"ez {self.env_id} s{self.seed}", dynamic_ncols=True, leave=False)
        returns = deque(maxlen=20)
        stats: dict = {}
        start_time, start_steps = time.time(), self.num_timesteps
        next_log = self.num_timesteps + c.log_interval
        next_ckpt = self.num_timesteps + c.checkpoint_interval if c.checkpoint_interval else end + 1
        try:
            while self.num_timesteps < end:
                progress = self.num_timesteps / end
                play = self._selfplay.step(self.model, self.objective, c.search, c.temperature_at(progress),
                                           self.rng, self.num_timesteps)
                self.num_timesteps += B
                returns.extend(play.pop("episodes"))
                if self.num_timesteps >= c.learning_starts:
                    self._train_credit += B * c.replay_ratio
                    while self._train_credit >= 1.0:
                        stats = self._train_step(beta=c.priority_beta + (1 - c.priority_beta) * progress)
                        self._train_credit -= 1.0

                bar.update(B)
                if stats and returns:
                    bar.set_postfix(loss=f"{stats['loss/total']:.3f}", ret=f"{np.mean(returns):.1f}",
                                    refresh=False)
                if logger is not None and self.num_timesteps >= next_log:
                    next_log += c.log_interval
                    fps = (self.num_timesteps - start_steps) / max(1e-9, time.time() - start_time)
                    logger.scalars({**stats, **play, "time/fps": fps, "replay/size": self.replay.size},
                                   self.num_timesteps)
                    if returns:
                        logger.scalar("rollout/ep_rew_mean", float(np.mean(returns)), self.num_timesteps)
                if callback is not None and callback(self.num_timesteps, act) is False:
                    break
                if self.num_timesteps >= next_ckpt:
                    next_ckpt += c.checkpoint_interval
                    self._save_resume()
            self._save_resume()
            if c.audit_episodes > 0:
                self._audit(c.audit_episodes, logger)
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        return self

    def _audit(self, episodes: int, logger: Optional[RunLogger]) -> dict:
        """The search-amplification audit (agent/audit.py) on `episodes` evaluation episodes: printed,
        logged under audit/*, and written to audit_train.json beside the run."""
        from agent.audit import run_audit
        out = self.tensorboard_log / "audit_train.json" if self.tensorboard_log is not None else None
        report = run_audit(self, episodes=episodes, out=out)
        r = report["returns"]
        tqdm.write(f"audit ({episodes} episodes) | return prior {r['prior']['mean']:.1f}, one-step greedy "
                   f"{r['greedy']['mean']:.1f}, search {r['search']['mean']:.1f} | search amplification "
                   f"{report['search_amplification']:+.3f}, over greedy {report['greedy_amplification']:+.3f}"
                   + (f"\nWARNING: {report['warning']}" if report["warning"] else ""))
        if logger is not None:
            logger.scalars({"audit/return_prior": r["prior"]["mean"], "audit/return_greedy": r["greedy"]["mean"],
                            "audit/return_search": r["search"]["mean"],
                            "audit/search_amplification": report["search_amplification"],
                            "audit/greedy_amplification": report["greedy_amplification"]}, self.num_timesteps)
        self.last_audit = report
        return report

    def _start_selfplay(self) -> None:
        c = self.config
        if self.replay is None:
            self.replay = Replay(c.replay_capacity, self.obs_shape, self.num_actions,
                                 alpha=c.priority_alpha, obs_dtype=self.obs_dtype, num_aux=len(c.aux_values))
        venv = envs.make_vec(self.env_id, c.num_envs, self.seed, wrappers=self.wrappers,
                             env_module=self.env_module)
        # A resumed run cannot restore the envs' internal state; it starts new episodes from
        # seeds that depend on the step count, so resuming stays deterministic.
        aux = [(name, _load_aux_reward(name, ref)) for name, ref in c.aux_values]
        self._selfplay = SelfPlay(venv, self.replay, seed=self.seed + self.num_timesteps, aux_rewards=aux)

    def _train_step(self, beta: float) -> dict:
        batch = self.learner.make_batch(self.replay, self.objective, self.rng, self.num_timesteps, beta)
        stats, value_error = self.learner.train_step(batch)
        self.replay.update_priorities(batch.index, value_error)
        return stats

    # ------------------------------------------------------------------ checkpoints
    def _payload(self) -> dict:
        return {"algo": "ez", "env_id": self.env_id, "env_module": self.env_module, "wrappers": self.wrappers,
                "seed": self.seed, "config": self.config.to_dict(), "num_timesteps": self.num_timesteps,
                "model": self.model.state_dict(),
                "aux_values": {name: head.state_dict() for name, head in self.learner.aux_heads.items()},
                "objective": self.objective.to_spec(), "objective_description": self.objective.describe(),
                "observation_normalization": None}  # none used: observations go to the model as they are

    def save(self, path: str | os.PathLike) -> Path:
        """Everything needed to act exactly as now (weights, config, objective), written atomically."""
        return atomic_save(self._payload(), path)

    def _save_resume(self) -> None:
        """model.pt's contents plus replay, optimizer, target network and RNG states (--resume)."""
        if self.tensorboard_log is None:
            return
        training = {"replay": self.replay.state_dict(), "learner": self.learner.state_dict(),
                    "rng": self.rng.bit_generator.state, "act_rng": self._act_rng.bit_generator.state,
                    "train_credit": self._train_credit}
        atomic_save({**self._payload(), "training": training}, self.tensorboard_log / RESUME_FILE)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto",
             tensorboard_log: Optional[str | os.PathLike] = None) -> "EZAgent":
        """Restore a model.pt (to act) or a resume.pt (to act or continue training where it stopped)."""
        payload = load_checkpoint(path)
        if payload.get("algo") != "ez":
            raise ValueError(f"{path} is a checkpoint of {payload.get('algo')!r}, not of the ez agent")
        agent = cls(payload["env_id"], AgentConfig.from_dict(payload["config"]), seed=payload["seed"],
                    device=device, tensorboard_log=tensorboard_log, env_module=payload["env_module"],
                    wrappers=payload["wrappers"])
        agent.model.load_state_dict(payload["model"])
        agent.learner.target_model.load_state_dict(payload["model"])
        for name, state in payload.get("aux_values", {}).items():
            agent.learner.aux_heads[name].load_state_dict(state)
        agent.num_timesteps = int(payload["num_timesteps"])
        try:
            agent.objective = agent._aux_objective_from_spec(payload["objective"]) or objective_from_spec(
                payload["objective"], discount=agent.config.discount)
        except ObjectiveNotRestorable as e:
            warnings.warn(f"{e}; acting with the learned objective instead (set_objective to restore it)")
        training = payload.get("training")
        if training is not None:
            agent.replay = Replay(agent.config.replay_capacity, agent.obs_shape, agent.num_actions,
                                  alpha=agent.config.priority_alpha, obs_dtype=agent.obs_dtype,
                                  num_aux=len(agent.config.aux_values))
            agent.replay.load_state_dict(training["replay"])
            agent.learner.load_state_dict(training["learner"])
            agent.rng.bit_generator.state = training["rng"]
            agent._act_rng.bit_generator.state = training["act_rng"]
            agent._train_credit = float(training["train_credit"])
        return agent


def _load_aux_reward(name: str, ref: str):
    import sys
    if os.getcwd() not in sys.path:  # `--reward mymod:fn` usually names a module beside the user
        sys.path.insert(0, os.getcwd())
    return load_callable(ref, f"aux reward function of --aux-value {name}")


def _env_id(env) -> str:
    if isinstance(env, str):
        return env
    spec = getattr(env, "spec", None)
    if isinstance(env, gym.Env) and spec is not None and spec.id:
        return spec.id
    raise ValueError(f"EZAgent needs a gymnasium env id or an env made with gymnasium.make (with spec.id); "
                     f"got {type(env).__name__}")
