"""Refit: the search's objective for a new reward, fitted from a run's stored replay with no
environment steps (`train.py refit --checkpoint RUN --reward mymod:fn`).

The representation and dynamics stay frozen; four small heads over their latents are fitted, on
the real states' latents and on the dynamics' latents unrolled K steps along the stored
trajectories (where the search reads them):

    reward(z')  the new reward of the transition into z' (target fn(obs, action, reward,
                next_obs, terminated); classified among its values when it takes a few, so
                that "no reward" is predicted exactly)
    end(z')     whether the new task ends the episode there: the environment's termination or
                the task's own (`fn.ends(next_obs)` where the reward function has one), a logit
    value(z)    the new objective's value, fitted in-sample as implicit Q-learning does: an upper
                expectile of reward + discount * [not end] * V~(next real state) over the
                transitions replay holds (V~ a periodically copied target). A max over the model's
                successors for actions replay never took reads values nobody fitted, and fitted
                value iteration amplifies them at a discount near 1 (measured on SideEffects:
                values of 3.5 for a task whose return is at most 1)
    policy(z)   a policy prior for the new objective: the actions searches under it (uniform
                prior) choose at the replayed states, imitated as the agent's own prior imitates
                its searches

The objective they make (`refit:NAME`, a registered kind) puts reward(z') on the edges, value(z)
at the leaves, treats end(z') as absorbing (Objective.ends) and gives the search policy(z) as
its prior (Objective.policy_logits) in place of the one trained under the old objective. The
upper expectile, not the replayed returns' mean: those are returns of the *old* policy, while the
expectile approaches the best the replayed actions achieve under the new reward. The heads are
stored in the checkpoint with the reward function's 'module:attr' string, so the objective reloads.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from agent.aux_values import _checked
from common.imports import load_callable
from nets.support import inverse_scalar_transform, scalar_transform
from planners.objectives import DEFAULT_DISCOUNT, Objective, register
from planners.policies import plan

PREFIX = "refit:"
VALUE_HEADS = 2  # value estimates whose minimum is the value (clipped double Q learning)
# The value is fitted in-sample, as implicit Q-learning does (Kostrikov et al. 2022): an upper
# expectile of r + discount * V(next) over the transitions replay holds, never a max over the
# model's successors for actions replay never took, whose values are extrapolations that fitted
# value iteration amplifies at a discount near 1 (measured: values of 3.5 where returns are <= 1).
EXPECTILE = 0.9
MAX_REWARD_CLASSES = 8  # a reward with at most this many distinct values in replay is classified
PRIOR_SMOOTHING = 0.1  # the fitted prior's target: the search's action, with this mass spread over all


def _mlp(latent_dim: int, hidden: int, out: int = 1) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(latent_dim, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, out))


class RefitHeads(torch.nn.Module):
    """reward, end (logit), value (in h(x)-space) and policy prior (logits) over latents; see the
    module docstring.

    `reward_values`: when the new reward takes a few distinct values in replay (a goal's 0 or 1),
    the reward head classifies among them and predicts the most likely one exactly. A regressed
    reward is never exactly 0, and value iteration at discount ~1 sums that noise over hundreds of
    steps (measured: values near 4 for a task whose return is at most 1)."""

    def __init__(self, latent_dim: int, hidden: int = 64, num_actions: int = 2,
                 reward_values: Optional[Sequence[float]] = None):
        super().__init__()
        self.latent_dim, self.hidden, self.num_actions = int(latent_dim), int(hidden), int(num_actions)
        self.reward_values = [float(v) for v in reward_values] if reward_values else []
        self.register_buffer("_values", torch.tensor(self.reward_values, dtype=torch.float32), persistent=False)
        # Classes weighted inversely to their frequency while fitting (set by refit): a goal's reward
        # is rare in replay, and an unweighted classifier learns to predict 0 everywhere.
        self.class_weight: Optional[torch.Tensor] = None
        self.reward = _mlp(self.latent_dim, self.hidden, max(1, len(self.reward_values)))
        self.end = _mlp(self.latent_dim, self.hidden)
        self.value = _mlp(self.latent_dim, self.hidden, VALUE_HEADS)
        self.policy = _mlp(self.latent_dim, self.hidden, self.num_actions)

    def reward_loss(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.reward_values:
            return ((self.reward(z).squeeze(-1) - target) ** 2).mean()
        return torch.nn.functional.cross_entropy(self.reward(z), self.reward_class(target), weight=self.class_weight)

    def reward_class(self, target: torch.Tensor) -> torch.Tensor:
        return (target.unsqueeze(-1) - self._values).abs().argmin(dim=-1)

    def reward_of(self, z: torch.Tensor) -> torch.Tensor:
        if not self.reward_values:
            return self.reward(z).squeeze(-1)
        return self._values[self.reward(z).argmax(dim=-1)]

    def end_logit(self, z: torch.Tensor) -> torch.Tensor:
        return self.end(z).squeeze(-1)

    def value_of(self, z: torch.Tensor) -> torch.Tensor:
        """The smaller of the value heads' estimates: a max over actions picks the action whose
        value is most overestimated, and fitted value iteration feeds that back (measured: values
        near 4 for a task whose return is at most 1 with one head)."""
        return inverse_scalar_transform(self.value(z).min(dim=-1).values)


@register("refit")
class RefitObjective(Objective):
    """Fitted reward on the edges, fitted value at the leaves, fitted task ends absorbing."""

    def __init__(self, name: str, heads: RefitHeads, reward_ref: str = "", discount: float = DEFAULT_DISCOUNT):
        self.name, self.heads, self.reward_ref, self.discount = name, heads, reward_ref, float(discount)

    @classmethod
    def from_spec(cls, spec, discount=None, context=None):
        refits = (context or {}).get("refit_heads", {})
        name = spec["head"]
        if name not in refits:
            raise ValueError(f"objective {PREFIX}{name}: this agent has no refitted heads of that name (it has: "
                             f"{', '.join(refits) or 'none'}; make them with train.py refit --reward module:fn)")
        heads, reward_ref = refits[name]
        g = spec.get("discount", discount)
        return cls(name, heads, reward_ref, DEFAULT_DISCOUNT if g is None else g)

    @classmethod
    def parse_short(cls, arg: str) -> dict:
        if not arg:
            raise ValueError("'refit' needs a name: refit:NAME")
        return {"name": cls.kind, "head": arg}

    def edge_reward(self, model, parent_latent, action, out):
        return self.heads.reward_of(out.latent)

    def leaf_value(self, model, out):
        return self.heads.value_of(out.latent)

    def ends(self, model, out):
        return self.heads.end_logit(out.latent) > 0

    has_prior = True  # the policy the search under this objective follows, fitted from replay

    def policy_logits(self, model, out):
        return self.heads.policy(out.latent)

    def describe(self) -> str:
        return (f"{PREFIX}{self.name} (discount={self.discount:g}): reward, episode end and value of "
                f"{self.reward_ref or 'a reward function'} fitted from replay over the frozen model's latents")

    def to_spec(self) -> dict:
        return {"name": self.kind, "head": self.name, "discount": self.discount}


@dataclass
class RefitReport:
    name: str
    reward: str
    transitions: int  # replayed transitions (unroll starts)
    unrolled: int  # (start, k) pairs the heads were fitted on
    steps: int
    wall_s: float
    reward_mse: float  # on the real transitions, after fitting
    end_accuracy: float
    value_td_error: float  # mean |V - target| in h(x)-space over the last 100 steps
    policy_agreement: float  # the fitted prior's argmax = the search's most visited action, on real states

    def to_dict(self) -> dict:
        return asdict(self)


def replay_transitions(replay) -> Tuple[np.ndarray, ...]:
    """Every stored transition whose successor is still stored: (obs, action, reward, next_obs,
    terminated), numpy, in storage order."""
    starts = _acted(replay)
    s, ns = starts % replay.capacity, replay.next[starts % replay.capacity] % replay.capacity
    return replay.obs[s], replay.action[s], replay.reward[s], replay.obs[ns], replay.terminal[ns] & replay.final[ns]


def _acted(replay) -> np.ndarray:
    """Global indices of the stored states that were acted in and whose successor is stored."""
    size, total, cap = replay.size, replay.total, replay.capacity
    g = np.arange(total - size, total)
    nxt = replay.next[g % cap]
    return g[~replay.final[g % cap] & (nxt >= total - size)]


def unroll_chains(replay, steps: int) -> np.ndarray:
    """[N, steps+1] global indices along the stored episodes from every acted state (column 0),
    -1 past an episode's end or the newest data: the real trajectories the heads are unrolled on."""
    cap, oldest = replay.capacity, replay.total - replay.size
    starts = _acted(replay)
    idx = np.full((len(starts), steps + 1), -1, dtype=np.int64)
    idx[:, 0] = starts
    for k in range(1, steps + 1):
        prev = idx[:, k - 1]
        rows = np.flatnonzero(prev >= 0)
        ps = prev[rows] % cap
        nxt = replay.next[ps]
        ok = ~replay.final[ps] & (nxt >= oldest)
        idx[rows[ok], k] = nxt[ok]
    return idx


def refit(agent, reward: str, name: str = "refit", steps: int = 3000, batch_size: int = 256,
          hidden: int = 64, lr: float = 1e-3, target_every: int = 100, seed: int = 0,
          discount: Optional[float] = None, log: Optional[Callable[[str], None]] = None) -> RefitReport:
    """Fit the `refit:NAME` heads for `reward` ('module:attr', fn(obs, action, reward, next_obs,
    terminated) -> [B]) on the agent's replay and set that objective on the agent. Needs an agent
    loaded with its training state (a resume.pt, or a run directory).

    The heads are fitted where the search reads them: on the dynamics' latents unrolled K steps
    (config.unroll_steps) along the stored trajectories from every replayed state, as the agent's
    own reward and value heads are, and on the representation's latents of the real states. Fitted
    on one-step latents alone, they were measured to mislead deeper trees (spurious rewards at
    depths they never saw)."""
    if agent.replay is None or agent.replay.size == 0:
        raise ValueError("refit needs the run's stored replay: pass the run directory or its resume.pt, not "
                         "model.pt (which holds the weights only)")
    if agent.config.net.value_prefix_lstm:
        raise ValueError("refit does not support the value-prefix LSTM (net.value_prefix_lstm); its reward "
                         "state is not stored in replay")
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    start = time.perf_counter()
    fn = load_callable(reward, "reward function of train.py refit --reward")
    replay, cap = agent.replay, agent.replay.capacity
    idx = unroll_chains(replay, agent.config.unroll_steps)
    if len(idx) == 0:
        raise ValueError("the run's replay holds no complete transition to refit on")
    model, device, A = agent.model, agent.device, agent.num_actions
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    # The real states on the chains, once each: their latents, whether an episode ended there
    # (the environment's termination, or the task's own end on arriving), and each transition's reward.
    states = np.unique(idx[idx >= 0])
    sid = np.where(idx >= 0, np.searchsorted(states, np.maximum(idx, 0)), -1)  # [N, K+1] -> row of `states`
    obs = replay.obs[states % cap]
    ended = replay.terminal[states % cap] & replay.final[states % cap]
    if hasattr(fn, "ends"):
        ended |= np.asarray(fn.ends(obs), bool) & _arrived(replay, states)
    real = sid[:, 1:] >= 0  # [N, K] transition k-1 -> k happened
    prev, nxt = sid[:, :-1][real], sid[:, 1:][real]
    prev_g = states[prev] % cap
    rewards = np.zeros(real.shape, np.float32)
    rewards[real] = _checked(name, fn, obs[prev], replay.action[prev_g], replay.reward[prev_g], obs[nxt],
                             replay.terminal[states[nxt] % cap] & replay.final[states[nxt] % cap])
    with torch.no_grad():  # the frozen model's latents, computed once
        z_real = _latents(model, obs)  # [U, D]
        unrolled = _unroll(model, z_real[torch.as_tensor(sid[:, 0])], torch.as_tensor(replay.action[idx[:, :-1] % cap]))
    real_t = torch.as_tensor(real, device=device)
    z_dyn = unrolled[real_t]  # [M, D]: dynamics latents of real states k >= 1 steps after a replayed one
    dyn_sid = torch.as_tensor(sid[:, 1:][real], device=device)
    distinct = np.unique(rewards[real])
    reward_values = distinct.tolist() if len(distinct) <= MAX_REWARD_CLASSES else None
    heads = RefitHeads(z_real.shape[1], hidden, A, reward_values).to(device)
    if reward_values:
        counts = torch.bincount(heads.reward_class(torch.as_tensor(rewards[real], device=device)),
                                minlength=len(reward_values)).float()
        heads.class_weight = counts.sum() / (len(reward_values) * counts.clamp(min=1.0))

    # 1. reward and end of each real transition, at the dynamics latent it leads to
    r_t = torch.as_tensor(rewards[real], device=device)
    r_all = r_t  # the same transitions, in the same order as prev / nxt
    e_t = torch.as_tensor(ended, device=device)[dyn_sid].float()
    opt = torch.optim.Adam(list(heads.reward.parameters()) + list(heads.end.parameters()), lr=lr)
    pos = float(e_t.mean())
    pos_weight = torch.tensor((1 - pos) / max(pos, 1e-3), device=device)  # ends are rare: balance them
    for _ in range(steps):
        i = torch.as_tensor(rng.integers(0, len(r_t), batch_size), device=device)
        loss = heads.reward_loss(z_dyn[i], r_t[i]) + torch.nn.functional.binary_cross_entropy_with_logits(
            heads.end_logit(z_dyn[i]), e_t[i], pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # 2. value iteration: each real state's target looks one model step ahead of its real latent,
    # max over actions; V is fitted on that latent and on every dynamics latent of the same state.
    dead = torch.as_tensor(ended, device=device)
    prev_t, next_t = torch.as_tensor(prev, device=device), torch.as_tensor(nxt, device=device)
    # Each fitted latent (a real state's, or the dynamics' latent of one) is paired with a
    # transition out of that state: its targets are r + discount * V~(next real state).
    order = np.argsort(prev, kind="stable")
    first = np.searchsorted(prev[order], np.arange(len(states)))
    has_out = first < len(prev)
    has_out[has_out] = prev[order][first[has_out]] == np.arange(len(states))[has_out]
    out_of = np.where(has_out, order[np.minimum(first, len(prev) - 1)], -1)  # a transition out of each state
    dyn_out = out_of[dyn_sid.cpu().numpy()]
    keep = (dyn_out >= 0) | ended[dyn_sid.cpu().numpy()]
    fit_latents = torch.cat([z_real[prev_t], z_dyn[torch.as_tensor(keep, device=device)]])
    fit_sid = torch.cat([prev_t, dyn_sid[torch.as_tensor(keep, device=device)]])
    fit_tr = torch.cat([torch.arange(len(prev), device=device), torch.as_tensor(np.maximum(dyn_out[keep], 0), device=device)])
    target_net = RefitHeads(z_real.shape[1], hidden, A, reward_values).to(device)
    opt = torch.optim.Adam(heads.value.parameters(), lr=lr)
    discount = agent.config.discount if discount is None else float(discount)
    live_next = (~dead[next_t]).float()
    td = []
    for step in range(steps):
        if step % target_every == 0:
            target_net.load_state_dict(heads.state_dict())
        i = torch.as_tensor(rng.integers(0, len(fit_latents), batch_size), device=device)
        j = fit_tr[i]
        with torch.no_grad():
            target = r_all[j] + discount * live_next[j] * target_net.value_of(z_real[next_t[j]])
            target = torch.where(dead[fit_sid[i]], torch.zeros_like(target), target)
        err = scalar_transform(target).unsqueeze(-1) - heads.value(fit_latents[i])
        weight = torch.where(err < 0, 1.0 - EXPECTILE, EXPECTILE)
        loss = (weight * err ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        td.append(float(err.detach().abs().mean()))

    # 3. the objective's own policy prior: the searches under it (with a uniform prior) at the
    # replayed states, imitated on their real and unrolled latents, as the agent's prior imitates
    # its searches. A prior trained under the old objective would pull the search back to it.
    objective = RefitObjective(name, heads.eval(), reward, discount)
    search = dataclasses.replace(agent.config.search, prior="uniform")
    with torch.no_grad():  # the action the search acts on (its most visited), smoothed: visit shares
        # of near-tied actions would give a prior too flat to steer the next search
        chosen = np.concatenate([plan(model, objective, obs[i:i + 1024], search, rng=np.random.default_rng(seed),
                                      add_noise=False, deterministic=True).action for i in range(0, len(obs), 1024)])
        pi = torch.full((len(obs), A), PRIOR_SMOOTHING / A, device=device)
        pi[torch.arange(len(obs)), torch.as_tensor(chosen, device=device)] += 1.0 - PRIOR_SMOOTHING
    heads.train()
    opt = torch.optim.Adam(heads.policy.parameters(), lr=lr)
    for _ in range(steps):
        i = torch.as_tensor(rng.integers(0, len(fit_latents), batch_size), device=device)
        loss = -(pi[fit_sid[i]] * torch.log_softmax(heads.policy(fit_latents[i]), dim=-1)).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    heads.eval()
    with torch.no_grad():
        policy_agreement = float((heads.policy(z_real).argmax(-1) == pi.argmax(-1)).float().mean())
        reward_mse = float(((heads.reward_of(z_dyn) - r_t) ** 2).mean())
        end_accuracy = float(((heads.end_logit(z_dyn) > 0).float() == e_t).float().mean())
    agent.add_refit(name, heads, reward)
    agent.set_objective({"name": RefitObjective.kind, "head": name, "discount": discount})
    report = RefitReport(name=name, reward=reward, transitions=len(idx), unrolled=int(real.sum()), steps=int(steps),
                         wall_s=time.perf_counter() - start, reward_mse=reward_mse, end_accuracy=end_accuracy,
                         value_td_error=float(np.mean(td[-100:])), policy_agreement=policy_agreement)
    if log is not None:
        log(f"refit {PREFIX}{name}: {report.transitions:,} transitions ({report.unrolled:,} unrolled), {steps} steps, {report.wall_s:.1f} s | "
            f"reward MSE {reward_mse:.4f}, end accuracy {end_accuracy:.3f}, value TD error {report.value_td_error:.3f}, "
            f"prior agreement {policy_agreement:.3f}")
    return report


def _arrived(replay, states: np.ndarray) -> np.ndarray:
    """Whether each stored state was arrived at by a transition (not an episode's first state)."""
    cap = replay.capacity
    arrived = np.zeros(len(states), bool)
    acted = _acted(replay)
    arrived[np.isin(states, replay.next[acted % cap])] = True
    return arrived


def _unroll(model, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """[N, K, D]: the dynamics' latents after 1..K of `actions` [N, K] from `z` [N, D]."""
    out, latent = [], z
    for k in range(actions.shape[1]):
        latent, _ = _successors(model, latent, actions[:, k].to(z.device))
        out.append(latent)
    return torch.stack(out, dim=1)


def _latents(model, obs: np.ndarray) -> torch.Tensor:
    return torch.cat([model.initial_inference(obs[i:i + 4096]).latent.flatten(1) for i in range(0, len(obs), 4096)])


def _successors(model, z: torch.Tensor, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(latents [N, D], the model's predicted terminal [N] bool: all False without a terminal head)."""
    latents, terminal = [], []
    for i in range(0, len(z), 4096):
        out = model.recurrent_inference(z[i:i + 4096].reshape(-1, *model.latent_shape), action[i:i + 4096])
        latents.append(out.latent.flatten(1))
        terminal.append(out.terminal if out.terminal is not None
                        else torch.zeros(len(out.latent), dtype=torch.bool, device=z.device))
    return torch.cat(latents), torch.cat(terminal)


def _all_successors(model, z: torch.Tensor, A: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """([N, A, D], [N, A]): dynamics(z, a) for every action, and its predicted terminal flag."""
    rows = z.repeat_interleave(A, dim=0)
    actions = torch.arange(A, device=z.device).repeat(len(z))
    latents, terminal = _successors(model, rows, actions)
    return latents.reshape(len(z), A, -1), terminal.reshape(len(z), A)
