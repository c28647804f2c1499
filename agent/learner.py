"""The learner: sample a batch from replay, unroll the model K steps, and take one gradient step.

Losses at every unroll step k = 0..K, against targets built from replay (agent/targets.py) and,
for a fraction of the batch, fresh searches with the target network (agent/reanalyze.py):

    policy       cross-entropy with the search's policy target           (acted states only)
    value        categorical cross-entropy with the n-step target        (absorbing states: 0)
                 (policy and value skip the states explorers acted in, agent/explore.py, unless
                 their policy target was reanalyzed under the training objective, and the value
                 unless explore_trains_value)
    reward       categorical cross-entropy, k >= 1                       (absorbing states: 0)
    terminal     binary cross-entropy of the terminal head (net.terminal_head) with the unroll's
                 absorbing flags: 1 at and after a terminal state, 0 elsewhere (a truncated final
                 state is a real state, not an end), wherever the state is known
    consistency  negative cosine between the projected predicted latent and the stop-gradient
                 projection of the real observation's latent, k >= 1     (EfficientZero's SimSiam)

As in MuZero, losses of steps k >= 1 are scaled by 1/K and the gradient through the dynamics is
halved at each step, so a long unroll does not dominate the representation's gradient. Each
sample is weighted by its prioritized-replay importance weight; its new priority is the error of
the predicted root value.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from agent.aux_values import AuxValues
from agent.config import AgentConfig
from agent.reanalyze import reanalyze_policies, reused
from agent.replay import Replay, Unroll
from agent.targets import value_targets
from nets.support import scalar_to_support, support_cross_entropy
from nets import compiled
from planners import fused, kernels
from planners.objectives import Learned


@dataclass
class Batch:
    """Tensors on the model's device. K = unroll steps; masks are float 0/1."""

    obs: torch.Tensor  # [B, K+1, *obs]  observations along the unroll (zeros where none)
    obs_mask: torch.Tensor  # [B, K+1]  a real observation exists (consistency target)
    actions: torch.Tensor  # [B, K]
    target_value: torch.Tensor  # [B, K+1]
    value_mask: torch.Tensor  # [B, K+1]
    state_mask: torch.Tensor  # [B, K+1]  a known state, whoever acted in it (terminal head)
    target_reward: torch.Tensor  # [B, K]
    reward_mask: torch.Tensor  # [B, K]
    target_policy: torch.Tensor  # [B, K+1, A]
    policy_mask: torch.Tensor  # [B, K+1]
    absorbing: torch.Tensor  # [B, K+1]  terminal or after a terminal (the terminal head's target)
    weights: torch.Tensor  # [B] importance-sampling weights
    index: np.ndarray  # [B] replay indices (for priority updates)
    aux_value: Dict[str, torch.Tensor] = field(default_factory=dict)  # NAME -> [B, K+1] aux returns


# Training steps from which learner_backend "auto" compiles the unroll: a run this long pays back
# the compilation even with torch's cache empty (the costs and savings: README, "Speed").
LEARNER_COMPILE_MIN_STEPS = 5_000


def value_prefix_targets(rewards: np.ndarray, mask: np.ndarray, horizon: int):
    """Value-prefix targets [B, K]: sums of rewards since the last reset (every `horizon`
    transitions), each known only where every reward it sums is known."""
    prefix, known = rewards.astype(np.float64).copy(), mask.copy()
    for k in range(1, rewards.shape[1]):
        if k % horizon:
            prefix[:, k] += prefix[:, k - 1]
            known[:, k] &= known[:, k - 1]
    return prefix.astype(np.float32), known


@dataclass
class Draft:
    """A batch on the host before its reanalyzed policies are in (Learner.draft / finish)."""

    index: np.ndarray  # [B]
    weights: np.ndarray  # [B]
    unroll: Unroll
    slots: np.ndarray  # [B, K+1] replay slots along the unroll
    obs: np.ndarray  # [B, K+1, *obs] observations along the unroll, read at sampling time
    z: np.ndarray  # [B, K+1] value targets
    aux_value: dict
    policy: np.ndarray  # [B, K+1, A] policy targets (stored, then reanalyzed where `redo`)
    redo: np.ndarray  # [B, K+1] bool: the policy target is (or will be) a reanalyzed one
    search: np.ndarray  # [B, K+1] bool: the part of `redo` still to be searched (none kept in replay)
    version: Optional[int]  # the target network's version when drafted; None: its searches are not kept
    epoch: int  # replay.reanalyzed_epoch when drafted

    @property
    def roots(self) -> np.ndarray:
        """The observations reanalyze searches from: [M, *obs], M = search.sum()."""
        return self.obs[self.search]

    def fill(self, policies: np.ndarray) -> None:
        """Put the searched policies [M, A] of `roots` in place."""
        self.policy[self.search] = policies


def root_values(model, obs, inference: str = "auto") -> np.ndarray:
    """The model's value [B] at observations: through its compiled forward where it has one and
    `inference` (SearchConfig.inference) allows it (planners/fused.py; on CartPole's bootstrap
    batch two thirds of torch's time), else torch."""
    program = fused.fused_program(model, Learned(), inference)
    if program is not None and program.has_representation:
        return fused.initial_inference(model, program, obs).value.numpy()
    return model.initial_inference(obs).value.cpu().numpy()


def one_step_q(model, obs, discount: float, inference: str = "auto") -> np.ndarray:
    """[B, A] r(s, a) + discount * V(s') one model step ahead of each observation, with V(s') = 0
    where the model predicts s' terminal: through the model's compiled forward where it has one
    and `inference` allows it (as `root_values`), else torch."""
    program = fused.fused_program(model, Learned(), inference)
    root = fused.packed_roots(model, program, obs) if program is not None and program.has_representation else None
    if root is None:
        with torch.no_grad():
            out = model.initial_inference(obs)
            n, a = out.latent.shape[0], out.policy_logits.shape[-1]
            nxt = model.recurrent_inference(out.latent.repeat_interleave(a, 0),
                                            torch.arange(a, device=out.latent.device).repeat(n))
            value = nxt.value if nxt.terminal is None else torch.where(nxt.terminal, 0.0, nxt.value)
            return (nxt.reward.float() + discount * value.float()).reshape(n, a).cpu().numpy()
    n, a = root.latent.shape[0], program.num_actions
    pool = np.empty((n * (a + 1), program.latent_dim), np.float32)
    pool[:n] = root.latent
    terminal_column = compiled.COL_LOGITS + a  # one column past the logits
    packed = np.zeros((n * a, terminal_column + 1))
    args = (program, pool, np.repeat(np.arange(n), a), np.tile(np.arange(a), n), n + np.arange(n * a), packed,
            terminal_column if program.has_terminal else -1)
    if not kernels.specialize(compiled.recurrent_step, *args)(*args):
        raise FloatingPointError("Model.recurrent_inference: the network produced NaN or inf (training has "
                                 "probably diverged: lower the learning rate or clip gradients)")
    reward = packed[:, compiled.COL_REWARD].astype(np.float32)  # rounded as the torch model's outputs are
    value = np.where(packed[:, terminal_column] > 0.5, 0.0, packed[:, compiled.COL_VALUE].astype(np.float32))
    return (reward + discount * value).reshape(n, a)


def greedy_q_values(select_model, price_model, obs, discount: float, inference: str = "auto") -> np.ndarray:
    """max_a r(s, a) + discount * V(s') [B] (AgentConfig.value_bootstrap="greedy-q"): the action
    is the one `select_model` (the online network) rates highest and its worth is `price_model`'s
    (the target network's), so one network's overestimate is not also the price it is paid
    (Double DQN)."""
    best = one_step_q(select_model, obs, discount, inference).argmax(-1)
    return one_step_q(price_model, obs, discount, inference)[np.arange(len(best)), best].astype(np.float64)


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; gradient multiplied by `scale` backward."""
    return x * scale + x.detach() * (1.0 - scale)


# Modules whose forward depends on train/eval mode (dropout, batch statistics, an RNN's dropout).
_MODE_DEPENDENT = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._NormBase, torch.nn.RNNBase)


class Learner:
    def __init__(self, model, config: AgentConfig, aux: Optional[AuxValues] = None):
        self.model = model
        self.config = config
        self.aux = aux  # auxiliary value heads (agent/aux_values.py), trained on the same batches
        # The target network supplies bootstrap values and reanalyzed policies: a slowly moving
        # copy, so that the targets do not chase the weights being trained on them.
        self.target_model = copy.deepcopy(model).eval().requires_grad_(False)
        # The fused kernel updates every parameter in one call where torch has one for the device,
        # instead of a dozen small ops per tensor (measured: README, "Speed").
        fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters()) or None
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                           fused=fused)
        # A float16 forward's small gradients would underflow: the scaler multiplies the loss up
        # and the gradients back down, skipping a step whose gradients overflowed. A no-op otherwise.
        self.scaler = torch.amp.GradScaler(model.device.type, enabled=model.compute_dtype == torch.float16)
        # A probe decoder (net.decoder_joint false) has its gradient norm clipped apart from the rest.
        probe = model.decoder if model.decoder is not None and not model.config.decoder_joint else None
        probe_ids = {id(p) for p in probe.parameters()} if probe is not None else set()
        self._clipped = [p for p in model.parameters() if id(p) not in probe_ids]
        self._probe = list(probe.parameters()) if probe is not None else []
        # Switching train/eval mode walks every module (0.75 ms a step on CartPole's model, 4 % of
        # a compiled training step): done only where some module behaves differently in it.
        self._switch_modes = any(isinstance(m, _MODE_DEPENDENT) for m in model.modules())
        self.train_steps = 0
        self.target_version = 0  # the training step the target network was last copied at
        # The share of the last batch's reanalyzed policy targets taken from replay, not searched.
        self.reanalysis_reused: Optional[float] = None
        self.planned_steps = 1  # training steps the whole run will take (for the LR schedule)
        self._losses = None  # self.losses, or its compiled form: chosen at the first training step
        self._compiled: Optional[bool] = None  # which one, once chosen

    # ------------------------------------------------------------------ backend
    @property
    def compiled(self) -> bool:
        """Whether the unroll's forward and backward run compiled (config.learner_backend): fixed
        at the first training step; before it, what that step would choose."""
        c = self.config
        if self._compiled is not None:
            return self._compiled
        if c.learner_backend != "auto":
            return c.learner_backend == "compiled"
        return (self.model.family == "mlp" and self.model.device.type == "cpu"
                and self.planned_steps >= LEARNER_COMPILE_MIN_STEPS)

    def _run_losses(self, batch: "Batch"):
        """self.losses(batch), through the backend chosen at the first call."""
        if self._losses is None and self.compiled:
            compiled = torch.compile(self.losses, fullgraph=True)  # fullgraph: a break would cost back the gain
            try:
                out = compiled(batch)
            except Exception as e:  # torch.compile's failures have no common base class
                if self.config.learner_backend == "compiled":
                    raise RuntimeError(f"learner_backend=compiled: torch.compile failed on the learner's unroll "
                                       f"({type(e).__name__}: {e}); --set learner_backend=eager runs it "
                                       f"uncompiled") from e
                warnings.warn(f"learner_backend=auto: torch.compile failed ({type(e).__name__}); the learner "
                              f"runs eager", RuntimeWarning)
            else:
                self._losses, self._compiled = compiled, True
                return out
        if self._losses is None:
            self._losses, self._compiled = self.losses, False
        return self._losses(batch)

    # ------------------------------------------------------------------ schedule
    def lr_at(self, step: int) -> float:
        c = self.config
        if step < c.lr_warmup_steps:
            return c.lr * (step + 1) / c.lr_warmup_steps
        if c.lr_schedule == "constant":
            return c.lr
        span = max(1, self.planned_steps - c.lr_warmup_steps)
        progress = min(1.0, (step - c.lr_warmup_steps) / span)
        floor = c.lr * c.lr_final_ratio
        return floor + (c.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    # ------------------------------------------------------------------ batch
    def make_batch(self, replay: Replay, objective, rng: np.random.Generator, env_steps: int,
                   beta: float) -> Batch:
        return self.make_batches(replay, objective, rng, env_steps, beta, 1)[0]

    def make_batches(self, replay: Replay, objective, rng: np.random.Generator, env_steps: int,
                     beta: float, count: int) -> List[Batch]:
        """`count` batches sampled now, whose reanalyzed policies come from ONE batched search over
        all their roots: a search costs far less per root at a larger batch. (With count > 1 the
        later batches are sampled before the earlier ones update their priorities.)"""
        drafts = [self.draft(replay, objective, rng, env_steps, beta) for _ in range(count)]
        roots = [d.roots for d in drafts]
        if sum(len(r) for r in roots):
            fresh = reanalyze_policies(self.target_model, objective, self.config.search, np.concatenate(roots), rng,
                                       self.config.reuse_reanalysis)
            for d, part in zip(drafts, np.split(fresh, np.cumsum([len(r) for r in roots])[:-1])):
                d.fill(part)
        return [self.finish(replay, d) for d in drafts]

    def draft(self, replay: Replay, objective, rng: np.random.Generator, env_steps: int, beta: float) -> Draft:
        """A sampled batch with its value targets and stored policies; `redo` marks the policy
        targets reanalyze replaces (searched under `objective`): from replay where a search with
        this target network is kept there (agent/reanalyze.py `reused`), else searched at `roots` (then `fill` and
        `finish`). Everything read from replay is read now, so the draft stays valid while replay
        is written to (agent/distributed/)."""
        c = self.config
        index, weights = replay.sample(c.batch_size, beta, rng)
        u = replay.unroll(index, c.unroll_steps, rng)
        slots = np.where(u.index >= 0, u.index, 0) % replay.capacity

        def targets(rewards, bootstrap, discount=c.discount):
            return value_targets(replay, u, td_steps=c.td_steps, discount=discount, env_steps=env_steps,
                                 correction_interval=c.td_correction_interval, bootstrap=bootstrap,
                                 rewards=rewards)[0]

        if c.value_bootstrap == "greedy-q":
            bootstrap = lambda obs: greedy_q_values(self.model, self.target_model, obs, c.discount,  # noqa: E731
                                                    c.search.inference)
        else:
            bootstrap = lambda obs: root_values(self.target_model, obs, c.search.inference)  # noqa: E731
        with torch.no_grad():
            z = targets(None, bootstrap)
        aux_value = {} if self.aux is None else self.aux.targets(
            targets, replay, lambda obs: self.model.initial_inference(obs).latent)
        policy = replay.policy[slots]  # [B, K+1, A] what the acting search chose back then
        redo = u.acted.copy()
        redo[int(round(c.reanalyze_fraction * c.batch_size)):] = False  # sampling is random: a random subset
        search, version = redo, None
        if reused(c.reuse_reanalysis, objective):
            version = self.target_version
            kept = redo & (replay.reanalyzed_at[slots] == version)
            policy[kept] = replay.reanalyzed[slots[kept]]
            search = redo & ~kept
        return Draft(index, weights, u, slots, replay.observations(slots), z, aux_value, policy, redo, search,
                     version, replay.reanalyzed_epoch)

    def finish(self, replay: Replay, d: Draft) -> Batch:
        """The batch of a draft whose searched policies (if any) are filled in; they are kept in
        replay for later batches (config.reuse_reanalysis)."""
        c, u = self.config, d.unroll
        if d.version is not None:
            if d.search.any():
                replay.keep_reanalyzed(u.index[d.search], d.policy[d.search], d.version, d.epoch)
            redone = int(d.redo.sum())
            self.reanalysis_reused = 1.0 - int(d.search.sum()) / redone if redone else None
        policy = d.policy
        policy[~u.acted] = 1.0 / replay.num_actions  # uniform past the end; its loss is masked
        stored = u.index >= 0
        obs = d.obs
        obs[~stored] = 0.0
        rewards = u.rewards
        reward_mask = u.reward_mask
        if c.net.value_prefix_lstm:  # the LSTM predicts sums of rewards since its last reset
            rewards, reward_mask = value_prefix_targets(rewards, reward_mask, c.net.value_prefix_horizon)

        dev = self.model.device
        f = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32), device=dev)  # noqa: E731
        # An explorer's actions and returns follow its own target: its states teach the model, not
        # the policy (a reanalyzed policy target does), nor the value unless explore_trains_value.
        policy_mask = u.acted & (~u.explore | d.redo)
        value_mask = u.known if c.explore_trains_value else u.known & ~u.explore
        return Batch(obs=f(obs), obs_mask=f(stored), actions=torch.as_tensor(u.actions, device=dev),
                     target_value=f(d.z), value_mask=f(value_mask), state_mask=f(u.known),
                     target_reward=f(rewards), reward_mask=f(reward_mask), target_policy=f(policy),
                     policy_mask=f(policy_mask),
                     absorbing=f(u.absorbing), weights=f(d.weights), index=d.index,
                     aux_value={k: f(v) for k, v in d.aux_value.items()})

    # ------------------------------------------------------------------ losses (the one unroll)
    def losses(self, batch: Batch):
        """Per-sample losses [B] by kind, and the root value error [B] (the new priority)."""
        c, model = self.config, self.model
        K = c.unroll_steps
        vs, rs, spacing = c.net.value_support_size, c.net.reward_support_size, c.net.support_step

        def value_loss(out, k):  # averaged over the value heads [B, E, S]
            target = scalar_to_support(batch.target_value[:, k], vs, spacing).unsqueeze(1)
            return support_cross_entropy(out.value_logits, target).mean(1) * batch.value_mask[:, k]

        def policy_loss(out, k):
            ce = -(batch.target_policy[:, k] * F.log_softmax(out.policy_logits, dim=-1)).sum(-1)
            return ce * batch.policy_mask[:, k]

        def terminal_loss(out, k):  # wherever the state is known
            bce = F.binary_cross_entropy_with_logits(out.terminal_logit, batch.absorbing[:, k], reduction="none")
            return bce * batch.state_mask[:, k]

        out = model.initial_inference(batch.obs[:, 0])
        latents = [out.latent]
        value_error = (out.value.detach() - batch.target_value[:, 0]).abs()
        loss = {"value": value_loss(out, 0), "policy": policy_loss(out, 0),
                "reward": torch.zeros_like(value_error), "consistency": torch.zeros_like(value_error)}
        with_terminal = out.terminal_logit is not None
        if with_terminal:
            loss["terminal"] = terminal_loss(out, 0)
        with torch.no_grad():  # latents of the real observations: the consistency targets
            B = batch.obs.shape[0]
            real = model.initial_inference(batch.obs[:, 1:].flatten(0, 1)).latent
            target_proj = model.project(real, with_grad=False).view(B, K, -1)

        latent, reward_state = out.latent, out.reward_state
        horizon = model.value_prefix_horizon
        for k in range(1, K + 1):
            if horizon is not None and (k - 1) % horizon == 0:
                reward_state = None  # reset, as the search does at the same depths
            out = model.recurrent_inference(latent, batch.actions[:, k - 1], reward_state)
            reward_target = scalar_to_support(batch.target_reward[:, k - 1], rs, spacing)
            step = {
                "value": value_loss(out, k),
                "policy": policy_loss(out, k),
                "reward": support_cross_entropy(out.reward_logits, reward_target) * batch.reward_mask[:, k - 1],
                "consistency": -F.cosine_similarity(model.project(out.latent, with_grad=True),
                                                    target_proj[:, k - 1], dim=-1) * batch.obs_mask[:, k],
            }
            if with_terminal:
                step["terminal"] = terminal_loss(out, k)
            for name, v in step.items():
                loss[name] = loss[name] + v / K
            latents.append(out.latent)
            latent, reward_state = scale_gradient(out.latent, 0.5), out.reward_state
        if model.decoder is not None:  # predicted observations, against the real ones where known
            # As a probe (net.decoder_joint false) the decoder reads detached latents: it learns to
            # decode them and never changes them.
            read = (lambda z: z) if model.config.decoder_joint else (lambda z: z.detach())
            loss["reconstruction"] = model.reconstruction_loss(read(latents[0]), batch.obs[:, 0])
            for k in range(1, K + 1):
                loss["reconstruction"] = loss["reconstruction"] + model.reconstruction_loss(
                    read(latents[k]), batch.obs[:, k]) * batch.obs_mask[:, k] / K
        if self.aux is not None:  # detached latents: the heads never move the model
            loss.update(self.aux.losses(latents, batch.aux_value, batch.value_mask, batch.state_mask))
        return loss, value_error

    # ------------------------------------------------------------------ one update
    def train_step(self, batch: Batch) -> Tuple[dict, np.ndarray]:
        """One gradient step on `batch`: (statistics for logging, new priorities [B])."""
        c = self.config
        lr = self.lr_at(self.train_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self._switch_modes:
            self.model.train()
        with self.model.unchecked_outputs():  # the total loss is checked once, below
            loss, value_error = self._run_losses(batch)
        weighted = {k: (v * batch.weights).mean() for k, v in loss.items()}
        total = (c.value_loss_weight * weighted["value"] + c.policy_loss_weight * weighted["policy"]
                 + c.reward_loss_weight * weighted["reward"]
                 + c.consistency_loss_weight * weighted["consistency"])
        if "reconstruction" in weighted:
            total = total + c.reconstruction_loss_weight * weighted["reconstruction"]
        if "terminal" in weighted:
            total = total + c.terminal_loss_weight * weighted["terminal"]
        aux_total = sum((v for k, v in weighted.items() if k.startswith("aux_")), torch.zeros(()))
        if not bool(torch.isfinite(total + aux_total)):  # before any weight is touched
            bad = ", ".join(k for k, v in weighted.items() if not bool(torch.isfinite(v)))
            raise FloatingPointError(f"Learner: the training loss is NaN or inf ({bad}): training has probably "
                                     f"diverged (lower the learning rate or clip gradients)")
        self.optimizer.zero_grad(set_to_none=True)
        if self.aux is not None:
            self.aux.zero_grad()
        # Aux losses reach only the aux heads (detached latents), whose own optimizer is not scaled.
        (self.scaler.scale(total) + aux_total).backward()
        self.scaler.unscale_(self.optimizer)  # clipped at their true size
        grad_norm = torch.nn.utils.clip_grad_norm_(self._clipped, c.max_grad_norm)
        if self._probe:  # clipped on its own: a probe's gradient must not rescale the others'
            torch.nn.utils.clip_grad_norm_(self._probe, c.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.aux is not None:
            self.aux.step(lr, c.max_grad_norm)
        if self._switch_modes:
            self.model.eval()
        self.train_steps += 1
        if self.train_steps % c.target_update_interval == 0:
            self.target_model.load_state_dict(self.model.state_dict())
            self.target_version = self.train_steps
        stats = {f"loss/{k}": v.item() for k, v in weighted.items()}
        stats.update({"loss/total": total.item(), "train/lr": lr, "train/grad_norm": grad_norm.item()})
        if self.scaler.is_enabled():  # a step whose gradients overflowed was skipped and the scale halved
            stats["train/grad_scale"] = self.scaler.get_scale()
        return stats, value_error.cpu().numpy()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"target_model": self.target_model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "train_steps": self.train_steps, "target_version": self.target_version,
                "planned_steps": self.planned_steps,
                "grad_scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.target_model.load_state_dict(state["target_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train_steps = int(state["train_steps"])
        # Older files: the step of the last copy at today's interval (their replay keeps no policies).
        self.target_version = int(state.get("target_version", self.train_steps
                                            - self.train_steps % self.config.target_update_interval))
        self.planned_steps = int(state["planned_steps"])
        if state.get("grad_scaler"):  # empty where the scaler is off (and before it existed)
            self.scaler.load_state_dict(state["grad_scaler"])
