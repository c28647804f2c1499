"""EZAgent: the EfficientZero-style agent behind Stable-Baselines3's learn / predict / save / load.

    agent = EZAgent("CartPole-v1", seed=0)
    agent.learn(20_000, callback=EvalCallback("CartPole-v1", seed=0, interval=2_000))
    action, _ = agent.predict(obs, deterministic=True)     # greedy search, no root noise
    agent.save("model.pt"); agent = EZAgent.load("model.pt")

The training loop, top to bottom: every iteration steps B envs once with one batched search
(agent/selfplay.py), takes the training steps now due (`replay_ratio` per env step;
agent/learner.py) on prioritized replay (agent/replay.py) with n-step targets (agent/targets.py) and
reanalyzed policies (agent/reanalyze.py), then calls the callbacks. Evaluation, checkpoints,
logging and the progress bar are callbacks (agent/callbacks.py). Every search maximizes
`agent.objective`, which can be swapped at any time.
"""
from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections import deque
from pathlib import Path
from typing import Dict, Optional, Sequence

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.logger import Logger, configure

import envs
from agent.aux_values import AuxValues
from agent.callbacks import ProgressBarCallback, as_callback
from agent.checkpoint import atomic_save, load as load_checkpoint
from agent.config import AgentConfig, apply_overrides, flatten, preset, resolve_config, resume_overrides
from agent.explore import FAMILIES, Explorers, explorer_count, intrinsic_heads
from agent.learner import Learner
from agent.protocol import Agent
from agent.refit import RefitHeads  # also registers the 'refit:NAME' objective kind
from agent.replay import Replay
from agent.selfplay import SelfPlay, StepReport
from nets import NonFiniteObservation, build_model, format_capacity_report, resolve_device
from planners.config import PRIOR_AFTER_SWAP, PRIOR_OWN_PRIOR
from planners.objectives import Objective, ObjectiveNotRestorable, objective_from_spec
from planners.plugins import validate
from planners.policies import plan


class EZAgent(Agent):
    algo = "ez"
    CHECKPOINT = "model.pt"
    RESUME = "resume.pt"
    can_swap_objective = True
    can_audit = True
    can_scale_out = True  # train.py --workers N: self-play on Ray actors (agent/distributed/)

    def __init__(self, env, config: Optional[AgentConfig | dict] = None, seed: int = 0,
                 device: str = "auto", run_dir: Optional[str | os.PathLike] = None, *,
                 env_module: Optional[str] = None, wrappers: Sequence[str | type] = ()):
        """`env`: a gymnasium id, or an env whose `spec.id` names one (the agent makes its own copies,
        with `wrappers` applied in order). `config`: an AgentConfig, a dict of settings over the
        env's preset, or None for the preset. `run_dir`: where TensorBoard scalars go."""
        self.device = resolve_device(device)  # an unavailable device is refused before any env is made
        self.env_id = _env_id(env)
        self.env_module = env_module
        self.wrappers = [w if isinstance(w, str) else f"{w.__module__}:{w.__qualname__}" for w in wrappers]
        if not isinstance(config, AgentConfig):
            config = resolve_config(self.env_id, overrides=config)
        self.config = config
        try:
            probe = envs.make(self.env_id, None, wrappers=self.env_wrappers(), env_module=env_module)
        except envs.NotApplicable as e:
            raise envs.NotApplicable(f"{self.algo} does not apply to {self.env_id}: {e}") from e
        self.obs_shape = tuple(probe.observation_space.shape)
        self.obs_dtype = probe.observation_space.dtype
        self.num_actions = int(probe.action_space.n)
        self.frame_stack = envs.frame_stack_of(probe)  # > 1: replay keeps one frame per state
        stacks_stacks = config.observation_history > 1 and envs.frame_stack_of(probe.env) > 1
        space = probe.observation_space
        obs_bounds = (space.low, space.high) if hasattr(space, "low") else None  # net.obs_scale=bounds
        probe.close()
        if stacks_stacks:
            raise ValueError(f"observation_history={config.observation_history} stacks observations that "
                             f"{self.env_id} with wrappers {self.wrappers} already stacks (a --wrapper "
                             f"FrameStackObservation, or Atari's own stack): drop that wrapper, or add --set "
                             f"observation_history=1")
        self.seed = int(seed)
        self.run_dir = Path(run_dir) if run_dir is not None else None

        torch.manual_seed(self.seed)
        self.model = build_model(self.obs_shape, self.num_actions, config.net, self.device, obs_bounds).eval()
        explorers = explorer_count(config.explore_fraction, config.num_envs)
        internal = intrinsic_heads(config.explore_family, explorers, config.explore_discount)
        taken = sorted(set(internal) & {name for name, _ in config.aux_values})
        if taken:
            raise ValueError(f"aux_values names a head {taken[0]!r}, which explore_family={config.explore_family} "
                             f"trains itself: give yours another NAME")
        self.aux = self._build_aux(internal) if config.aux_values or internal else None
        if explorers and FAMILIES[config.explore_family].decodes and not self.model.decodes_whole_observation:
            raise ValueError(f"explore_fraction={config.explore_fraction} with explore_family="
                             f"{config.explore_family} needs a decoder of the whole observation, which this "
                             f"network has not (net.use_decoder off, or pixel images, whose decoder predicts a "
                             f"downsampled frame): set --set explore_fraction=0, or explore_family=visit-count")
        self.refits: Dict[str, tuple] = {}  # NAME -> (RefitHeads, reward 'module:attr'): train.py refit
        self.learner = Learner(self.model, config, self.aux)
        self.objective: Objective = objective_from_spec("learned", config.discount)
        if config.objective != "learned":  # trained under it: the prior learns it too
            self.set_objective(config.objective, prior=config.search.prior)
        self.rng = np.random.default_rng(self.seed)  # search noise, action sampling, replay sampling
        self._act_rng = np.random.default_rng(self.seed + 1)  # stochastic predict() outside training
        self._num_timesteps = 0
        self.replay: Optional[Replay] = None  # made on the first learn(): acting needs none
        # What writes experience into replay: a SelfPlay over this process's envs, or during a
        # distributed learn the driver's writer of the actors' transitions (agent/distributed/),
        # which has the same state_dict() for save_resume.
        self._selfplay: Optional[SelfPlay] = None
        self._saved_selfplay: Optional[dict] = None  # where a resumed run's envs were (save_resume)
        self._train_credit = 0.0  # fractional training steps owed (replay_ratio * env steps)
        # The share of each batch's reanalysis a distributed run's learner searches itself
        # (agent/distributed/loop.py), kept across a resume so the balance is not found again.
        self.reanalysis_local_share = 0.0
        self._logger: Optional[Logger] = None
        self._custom_logger = False
        self._last_stats: dict = {}  # the latest training step's statistics
        self._last_play: Optional[StepReport] = None
        self._recent_returns: deque = deque(maxlen=20)
        self._explorer_returns: deque = deque(maxlen=20)

    def _build_aux(self, internal: Dict[str, float]) -> AuxValues:
        """The user's auxiliary value heads (config.aux_values) and those the explorers need."""
        with torch.no_grad():
            latent = self.model.initial_inference(np.zeros((1, *self.obs_shape), dtype=self.obs_dtype)).latent
        return AuxValues(self.config.aux_values, int(np.prod(latent.shape[1:])), self.config.aux_hidden,
                         self.config.lr, self.device, internal=internal)

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------ acting
    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """Actions for one observation or a batch, as Stable-Baselines3's predict: (actions, None).

        deterministic=True: the search's choice without root noise (what evaluation uses): pUCT's
        most visited root action, Gumbel's best by prior logits plus rescaled Q among the actions
        left by sequential halving. False: with noise: pUCT's sample from the visit counts,
        Gumbel's choice under its sampled Gumbel noise.
        """
        obs = np.asarray(observation, dtype=self.obs_dtype)
        single = obs.shape == self.obs_shape
        if single:
            obs = obs[None]
        elif obs.shape[1:] != self.obs_shape:
            raise ValueError(f"predict expects an observation of shape {self.obs_shape} or a batch "
                             f"[N, {', '.join(map(str, self.obs_shape))}], got {obs.shape}")
        # A deterministic search gets a fresh generator so that it is a pure function of obs.
        rng = np.random.default_rng(0) if deterministic else self._act_rng
        result = plan(self.model, self.objective, obs, self.config.search, rng=rng,
                      add_noise=not deterministic, deterministic=deterministic)
        actions = result.action.astype(np.int64)
        return (actions[0] if single else actions), None

    def explain(self, observation) -> dict:
        """What one greedy search considered at `observation` (agent/studies/explain.py): the root
        table (visits, prior, predicted reward, Q and its parts), the principal variation with
        predicted observations when the model has a decoder, and the objective; 'text' renders it."""
        from agent.studies.explain import explain, format_explanation
        d = explain(self, observation)
        return {**d, "text": format_explanation(d)}

    def set_objective(self, objective: Objective | str | dict, prior: Optional[str] = None) -> None:
        """What every later search maximizes (acting, self-play and reanalyze); no retraining.
        A name or spec is built through the objective registry; 'aux:NAME' plugs in the auxiliary
        value head NAME trained with the agent (config.aux_values). Checked once on a dummy batch.

        prior: the policy prior's setting from now on ('learned', 'uniform', 'mixed(A)'). By
        default the learned objective keeps the current one and any other objective gets
        PRIOR_AFTER_SWAP, and an objective with a prior of its own PRIOR_OWN_PRIOR (both chosen on
        the transfer suite's dev objectives, planners/config.py): the learned prior imitates
        searches under the objective it was trained with, and can pull a swapped one back."""
        objective = objective_from_spec(objective, self.config.discount, self.objective_context())
        validate(objective, self.model, self.obs_shape)
        if prior is None and objective.has_prior:  # 'learned' would be its own (Objective.policy_logits)
            prior = PRIOR_OWN_PRIOR
        elif prior is None and objective.to_spec().get("name") != "learned":
            prior = PRIOR_AFTER_SWAP
        if prior is not None:
            self.set_prior(prior)
        self.objective = objective
        self._forget_reanalyzed()  # set_prior forgets too; a learned objective may keep the prior

    def _forget_reanalyzed(self) -> None:
        """Reanalyzed policy targets kept in replay were searched under the objective and search
        settings of their time: after a change, later batches search again."""
        replay = getattr(self, "replay", None)  # set_objective runs in __init__, before replay exists
        if replay is not None:
            replay.forget_reanalyzed()

    def objective_context(self) -> dict:
        """What objective specs can name but not hold: this agent's auxiliary value heads and the
        heads `refit` fitted for other rewards."""
        return {"aux_heads": dict(self.aux.heads.items()) if self.aux is not None else {},
                "refit_heads": dict(self.refits)}

    def add_refit(self, name: str, heads, reward: str) -> None:
        """Keep heads fitted by agent.refit for the objective 'refit:NAME' (saved with the agent)."""
        self.refits[name] = (heads.to(self.device).eval(), reward)

    def set_prior(self, prior: str) -> None:
        """The learned prior's weight in selection: 'learned', 'uniform' or 'mixed(alpha)'."""
        self.config.search = dataclasses.replace(self.config.search, prior=prior)
        self._forget_reanalyzed()

    def capacity_report(self) -> str:
        return format_capacity_report(self.model.capacity_report())

    def summary(self) -> str:
        return (f"EZAgent on {self.env_id} (seed {self.seed}, {self.device}), {self.num_parameters:,} parameters\n"
                f"objective: {self.objective.describe()} (prior {self.config.search.prior})\n"
                f"{self.capacity_report()}")

    # ------------------------------------------------------------------ training
    def learn(self, total_timesteps: int, callback=None, progress_bar: bool = False) -> "EZAgent":
        """Train for `total_timesteps` more environment steps: self-play, the training steps due,
        then `callback.on_step()` (an SB3 BaseCallback or a list of them; False stops training)."""
        if self._selfplay is None:
            self._start_selfplay()
        end = self.num_timesteps + int(total_timesteps)
        callback = self._start_training(end, callback, progress_bar)
        while self.num_timesteps < end:
            try:
                self._play_and_train(self.num_timesteps / end)
            except NonFiniteObservation as e:  # the observations come from the training envs
                raise NonFiniteObservation(f"{self.env_id} (self-play): {e}") from e
            if callback.on_step() is False:
                break
        callback.on_training_end()
        return self

    def _start_training(self, end: int, callback, progress_bar: bool):
        """What every training session does before its first step (here and in the distributed
        loop, agent/distributed/loop.py): schedules over the run up to env step `end`, the logger,
        and the callbacks, started. Returns the one callback to call."""
        c = self.config
        # Schedules (temperature, beta, LR) run over the whole run, so a resumed run continues them.
        self.learner.planned_steps = max(1, int((end - c.learning_starts) * c.replay_ratio))
        if not self._custom_logger:
            self._logger = _default_logger(self.run_dir)
        callback = as_callback(callback, ProgressBarCallback(f"ez {self.env_id} s{self.seed}")
                               if progress_bar else None)
        callback.init_callback(self)
        callback.on_training_start({"total_timesteps": end}, globals())
        return callback

    def _play_and_train(self, progress: float) -> None:
        """One self-play step in every env, then the training steps now due."""
        c = self.config
        self._last_play = self._selfplay.step(self.model, self.objective, c.search, c.temperature_at(progress),
                                              self.rng, self.num_timesteps)
        self._count_and_train(self._last_play, progress)

    def _count_and_train(self, report: StepReport, progress: float, make_batch=None) -> None:
        """Count one vector step (num_envs env steps, written into replay), then take the training
        steps now due: `replay_ratio` per env step from `learning_starts` on. `make_batch(beta)`:
        where a batch comes from when not from this process's own reanalysis (the distributed
        loop's reanalyze actors)."""
        c = self.config
        self._num_timesteps += c.num_envs
        self._recent_returns.extend(report.finished_returns)
        self._explorer_returns.extend(report.explorer_returns)
        if self.num_timesteps >= c.learning_starts:
            self._train_credit += c.num_envs * c.replay_ratio
            beta = c.priority_beta + (1 - c.priority_beta) * progress
            if c.batched_reanalyze and make_batch is None and self._train_credit >= 2.0:
                due = int(self._train_credit)
                for batch in self.learner.make_batches(self.replay, self.objective, self.rng, self.num_timesteps,
                                                       beta, due):
                    self._last_stats = self._train_on(batch)
                self._train_credit -= due
            while self._train_credit >= 1.0:
                self._last_stats = (self._train_on(make_batch(beta)) if make_batch is not None
                                    else self._train_step(beta=beta))
                self._train_credit -= 1.0

    def _ensure_replay(self) -> Replay:
        c = self.config
        if self.replay is None:
            self.replay = self.new_replay()
        return self.replay

    def new_replay(self) -> Replay:
        """An empty replay for this agent's environment and settings."""
        c = self.config
        return Replay(c.replay_capacity, self.obs_shape, self.num_actions, alpha=c.priority_alpha,
                      obs_dtype=self.obs_dtype, num_aux=len(self.aux.names) if self.aux else 0, frame_stack=self.frame_stack,
                      reward_clip=c.reward_clip)

    def _start_selfplay(self) -> None:
        c = self.config
        self._ensure_replay()
        venv = envs.make_vec(self.env_id, c.num_envs, self.seed, wrappers=self.env_wrappers(),
                             env_module=self.env_module)
        self._selfplay = SelfPlay(venv, self.replay, seed=self.seed + self.num_timesteps, aux=self.aux,
                                  explorers=self.make_explorers())
        if self._saved_selfplay is not None:
            # A resumed run continues the very episodes it stopped in when the envs' state is
            # plain data; otherwise it goes on from fresh episodes seeded by the step count.
            # A distributed run's envs lived in its actors: starting fresh episodes is expected.
            if (not self._selfplay.load_state_dict(self._saved_selfplay, self.num_timesteps)
                    and not self._saved_selfplay.get("distributed")):
                warnings.warn(f"{self.env_id} keeps state that cannot be saved as data: the resumed run "
                              f"starts fresh episodes (open ones were closed as truncated), so it will not "
                              f"equal a run that was never stopped")
            self._saved_selfplay = None

    def make_explorers(self) -> Explorers:
        """The explorers of one SelfPlay over `num_envs` envs (agent/explore.py; none at fraction 0)."""
        c = self.config
        return Explorers(explorer_count(c.explore_fraction, c.num_envs), int(np.prod(self.obs_shape)),
                         c.explore_weight, c.explore_family, heads=self.aux.heads if self.aux else None,
                         discount=c.explore_discount)

    def _train_step(self, beta: float) -> dict:
        return self._train_on(self.learner.make_batch(self.replay, self.objective, self.rng,
                                                      self.num_timesteps, beta))

    def _train_on(self, batch) -> dict:
        stats, value_error = self.learner.train_step(batch)
        self.replay.update_priorities(batch.index, value_error)
        if self.learner.reanalysis_reused is not None:
            stats["train/reanalysis_reused"] = self.learner.reanalysis_reused
        return stats

    # ------------------------------------------------------------------ logging (agent/protocol.py)
    @property
    def logger(self) -> Logger:
        if self._logger is None:
            self._logger = _default_logger(None)
        return self._logger

    def set_logger(self, logger: Logger) -> None:
        self._logger, self._custom_logger = logger, True

    def get_env(self):
        return None if self._selfplay is None else self._selfplay.venv

    def log_values(self) -> dict:
        out = dict(self._last_stats)
        if self._last_play is not None:
            out.update(self._last_play.stats)
        if self.replay is not None:
            out["replay/size"] = self.replay.size
        if self._recent_returns:
            out["rollout/ep_rew_mean"] = float(np.mean(self._recent_returns))
        if self._explorer_returns:  # the training objective's return while pursuing other targets
            out["explore/ep_rew_mean"] = float(np.mean(self._explorer_returns))
        return out

    def progress_postfix(self) -> dict:
        if not (self._last_stats and self._recent_returns):
            return {}
        return {"loss": f"{self._last_stats['loss/total']:.3f}", "ret": f"{np.mean(self._recent_returns):.1f}"}

    @classmethod
    def check_config(cls, env_id: str, config: Optional[dict], resuming: bool = False) -> None:
        if resuming:  # keys and types only: a setting's effect depends on the run's config (resume_overrides)
            apply_overrides(preset(env_id), flatten(config or {}))
        else:
            resolve_config(env_id, overrides=config)

    @property
    def can_resume(self) -> bool:
        return self.replay is not None

    def apply_resume_settings(self, settings: Optional[dict]) -> dict:
        if not settings:
            return {}
        searched_before = self.config.search
        self.config = self.learner.config = resume_overrides(self.config, settings)
        if self.config.search != searched_before:
            self._forget_reanalyzed()
        return flatten(settings)

    def env_wrappers(self, wrappers: Optional[Sequence[str]] = None) -> list:
        return [*super().env_wrappers(wrappers), *self.config.history_wrappers()]

    def hyperparameters(self) -> dict:
        return {"hyperparameters": self.config.to_dict(),
                "hyperparameters_source": f"agent/config.py preset for {self.env_id} + config overrides"}

    # ------------------------------------------------------------------ checkpoints
    def _payload(self) -> dict:
        return {"algo": self.algo, "env_id": self.env_id, "env_module": self.env_module, "wrappers": self.wrappers,
                "seed": self.seed, "config": self.config.to_dict(), "num_timesteps": self.num_timesteps,
                "model": self.model.state_dict(),
                "aux_values": self.aux.heads.state_dict() if self.aux is not None else {},
                "refit_heads": {name: {"reward": reward, "latent_dim": heads.latent_dim, "hidden": heads.hidden,
                                       "num_actions": heads.num_actions, "reward_values": heads.reward_values,
                                       "value_range": list(heads.value_range),
                                       "state": heads.state_dict()} for name, (heads, reward) in self.refits.items()},
                "objective": self.objective.to_spec(), "objective_description": self.objective.describe()}

    def save(self, path: str | os.PathLike) -> Path:
        """Everything needed to act exactly as now (weights, config, objective), written atomically."""
        return atomic_save(self._payload(), path)

    def save_resume(self, path: str | os.PathLike) -> Path:
        """model.pt's contents plus replay, optimizers, target network and RNG states (--resume)."""
        training = {"replay": self.replay.state_dict(), "learner": self.learner.state_dict(),
                    "aux": self.aux.state_dict() if self.aux is not None else None,
                    # where the envs are; a loaded agent not yet run, or one back from a
                    # distributed run, keeps what it was given
                    "selfplay": self._selfplay.state_dict() if self._selfplay is not None else self._saved_selfplay,
                    "rng": self.rng.bit_generator.state, "act_rng": self._act_rng.bit_generator.state,
                    "train_credit": self._train_credit, "reanalysis_local_share": self.reanalysis_local_share}
        return atomic_save({**self._payload(), "training": training}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto",
             run_dir: Optional[str | os.PathLike] = None) -> "EZAgent":
        """Restore a model.pt (to act) or a resume.pt (to act or continue training where it stopped)."""
        payload = load_checkpoint(path)
        if payload.get("algo") != cls.algo:
            raise ValueError(f"{path} is a checkpoint of {payload.get('algo')!r}, not of the ez agent")
        config = AgentConfig.from_dict(payload["config"])
        if config.net.use_decoder is None and not any(k.startswith("decoder.") for k in payload["model"]):
            # Saved when its network family had no decoder by default (pixel images before the
            # frame decoder): it keeps having none.
            config = apply_overrides(config, {"net.use_decoder": False})
        agent = cls(payload["env_id"], config, seed=payload["seed"],
                    device=device, run_dir=run_dir, env_module=payload["env_module"],
                    wrappers=payload["wrappers"])
        agent.model.load_state_dict(payload["model"])
        agent.learner.target_model.load_state_dict(payload["model"])
        if agent.aux is not None:
            agent.aux.heads.load_state_dict(payload["aux_values"])
        agent._num_timesteps = int(payload["num_timesteps"])
        for name, saved in payload.get("refit_heads", {}).items():
            heads = RefitHeads(saved["latent_dim"], saved["hidden"], saved["num_actions"], saved["reward_values"],
                               saved.get("value_range", (-math.inf, math.inf)))  # older checkpoints: unbounded
            heads.load_state_dict(saved["state"])
            agent.add_refit(name, heads, saved["reward"])
        try:
            agent.objective = objective_from_spec(payload["objective"], agent.config.discount,
                                                  agent.objective_context())
        except ObjectiveNotRestorable as e:
            warnings.warn(f"{e}; acting with the learned objective instead (set_objective to restore it)")
            restored = False
        else:
            restored = True
        training = payload.get("training")
        if training is not None:
            agent.replay = agent.new_replay()
            agent.replay.load_state_dict(training["replay"])
            if not restored:  # what replay kept was searched under the objective not restored
                agent.replay.forget_reanalyzed()
            agent.learner.load_state_dict(training["learner"])
            if agent.aux is not None and training.get("aux"):
                agent.aux.load_state_dict(training["aux"])
            agent.rng.bit_generator.state = training["rng"]
            agent._act_rng.bit_generator.state = training["act_rng"]
            agent._train_credit = float(training["train_credit"])
            agent.reanalysis_local_share = float(training.get("reanalysis_local_share", 0.0))  # older files: 0
            agent._saved_selfplay = training.get("selfplay")
        return agent


def _default_logger(run_dir: Optional[Path]) -> Logger:
    """TensorBoard scalars in the run directory, or a logger that writes nothing."""
    return configure(str(run_dir), ["tensorboard"]) if run_dir is not None else Logger(folder=None, output_formats=[])


def _env_id(env) -> str:
    if isinstance(env, str):
        return env
    spec = getattr(env, "spec", None)
    if isinstance(env, gym.Env) and spec is not None and spec.id:
        return spec.id
    raise ValueError(f"EZAgent needs a gymnasium env id or an env made with gymnasium.make (with spec.id); "
                     f"got {type(env).__name__}")
