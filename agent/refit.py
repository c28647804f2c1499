"""Refit: the search's objective for a new reward, fitted from a run's stored replay with no
environment steps (`train.py refit --checkpoint RUN --reward mymod:fn`).

The representation and dynamics stay frozen; three small heads over their latents are fitted:

    reward(z')  the new reward of the transition into z' (regressed on the real transitions in
                replay: z' = dynamics(representation(obs), action), target fn(obs, action,
                reward, next_obs, terminated))
    end(z')     whether the new task ends the episode there: the environment's termination or
                the task's own (`fn.ends(next_obs)` where the reward function has one), a logit
    value(z)    the new objective's value, by fitted value iteration over replayed states with
                the learned model: V(z) <- max_a reward(z'_a) + discount * [not end(z'_a)] * V~(z'_a),
                z'_a = dynamics(z, a), V~ a periodically copied target; fitted on the
                representation's latents of the replayed states and of their real successors, and
                on the dynamics' latent of each real transition (the search reads values there)

    policy(z)   a policy prior for the new objective: the visit distributions of searches under
                it (uniform prior) at the replayed states, imitated as the agent's own prior
                imitates its searches

The objective they make (`refit:NAME`, a registered kind) puts reward(z') on the edges, value(z)
at the leaves, treats end(z') as absorbing (Objective.ends) and gives the search policy(z) as
its prior (Objective.policy_logits) in place of the one trained under the old objective. Value iteration, not the replayed
returns: those are returns of the *old* policy, while the max over actions evaluates the policy the
search will follow under the new reward. The heads are stored in the checkpoint with the reward
function's 'module:attr' string, so the objective reloads.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from agent.aux_values import _checked
from common.imports import load_callable
from nets.support import inverse_scalar_transform, scalar_transform
from planners.objectives import DEFAULT_DISCOUNT, Objective, register
from planners.policies import plan

PREFIX = "refit:"
PRIOR_SMOOTHING = 0.1  # the fitted prior's target: the search's action, with this mass spread over all


def _mlp(latent_dim: int, hidden: int, out: int = 1) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(latent_dim, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, out))


class RefitHeads(torch.nn.Module):
    """reward, end (logit), value (in h(x)-space) and policy prior (logits) over latents; see the
    module docstring."""

    def __init__(self, latent_dim: int, hidden: int = 64, num_actions: int = 2):
        super().__init__()
        self.latent_dim, self.hidden, self.num_actions = int(latent_dim), int(hidden), int(num_actions)
        self.reward = _mlp(self.latent_dim, self.hidden)
        self.end = _mlp(self.latent_dim, self.hidden)
        self.value = _mlp(self.latent_dim, self.hidden)
        self.policy = _mlp(self.latent_dim, self.hidden, self.num_actions)

    def reward_of(self, z: torch.Tensor) -> torch.Tensor:
        return self.reward(z).squeeze(-1)

    def end_logit(self, z: torch.Tensor) -> torch.Tensor:
        return self.end(z).squeeze(-1)

    def value_of(self, z: torch.Tensor) -> torch.Tensor:
        return inverse_scalar_transform(self.value(z).squeeze(-1))


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
          log: Optional[Callable[[str], None]] = None) -> RefitReport:
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
    heads = RefitHeads(z_real.shape[1], hidden, A).to(device)

    # 1. reward and end of each real transition, at the dynamics latent it leads to
    r_t = torch.as_tensor(rewards[real], device=device)
    e_t = torch.as_tensor(ended, device=device)[dyn_sid].float()
    opt = torch.optim.Adam(list(heads.reward.parameters()) + list(heads.end.parameters()), lr=lr)
    pos = float(e_t.mean())
    pos_weight = torch.tensor((1 - pos) / max(pos, 1e-3), device=device)  # ends are rare: balance them
    for _ in range(steps):
        i = torch.as_tensor(rng.integers(0, len(r_t), batch_size), device=device)
        loss = ((heads.reward_of(z_dyn[i]) - r_t[i]) ** 2).mean() + torch.nn.functional.binary_cross_entropy_with_logits(
            heads.end_logit(z_dyn[i]), e_t[i], pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # 2. value iteration: each real state's target looks one model step ahead of its real latent,
    # max over actions; V is fitted on that latent and on every dynamics latent of the same state.
    with torch.no_grad():
        succ, succ_terminal = _all_successors(model, z_real, A)  # [U, A, D]
        flat = succ.flatten(0, 1)
        succ_r = heads.reward_of(flat).reshape(len(states), A)
        succ_live = (~((heads.end_logit(flat) > 0).reshape(len(states), A) | succ_terminal)).float()
    dead = torch.as_tensor(ended, device=device)
    fit_latents = torch.cat([z_real, z_dyn])
    fit_sid = torch.cat([torch.arange(len(states), device=device), dyn_sid])
    target_net = RefitHeads(z_real.shape[1], hidden, A).to(device)
    opt = torch.optim.Adam(heads.value.parameters(), lr=lr)
    discount = agent.config.discount
    td = []
    for step in range(steps):
        if step % target_every == 0:
            target_net.load_state_dict(heads.state_dict())
        i = torch.as_tensor(rng.integers(0, len(fit_latents), batch_size), device=device)
        u = fit_sid[i]
        with torch.no_grad():
            v_next = target_net.value_of(succ[u].flatten(0, 1)).reshape(batch_size, A)
            target = (succ_r[u] + discount * succ_live[u] * v_next).max(dim=1).values
            target = torch.where(dead[u], torch.zeros_like(target), target)
        err = heads.value(fit_latents[i]).squeeze(-1) - scalar_transform(target)
        loss = (err ** 2).mean()
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
    agent.set_objective(f"{PREFIX}{name}")
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
