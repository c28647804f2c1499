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
    value(z)    the new objective's value. Where the replay's states repeat (a grid world:
                few distinct observations, each left by several actions), the exact in-sample
                optimum: value iteration over the graph of replayed transitions between identical
                observations (agent/replay_graph.py), regressed, and the head's output bounded
                by the range of those values. Elsewhere (continuous states) fitted in-sample as
                implicit Q-learning does: an upper expectile of reward + discount * [not end] *
                V~(next real state) over the transitions replay holds (V~ a periodically copied
                target). Never a max over the model's successors for actions replay never
                took: those read values nobody fitted, and fitted value iteration amplifies
                them at a discount near 1. On a grid even the fitted expectile drifts above any
                return and flattens over cells a few steps apart (README "Refit"), which is
                why the graph's exact values are used wherever states repeat
    policy(z)   a policy prior for the new objective: at each replayed state the actions that
                achieve the graph's value, or (continuous states) the action a search under the
                new objective (uniform prior) chooses, imitated as the agent's own prior imitates
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
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from agent.aux_values import _checked
from agent.replay_graph import observation_classes, replay_graph, states_repeat
from common.imports import load_callable
from nets.support import inverse_scalar_transform, scalar_transform
from planners.objectives import DEFAULT_DISCOUNT, Objective, register, spec_discount
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
                 reward_values: Optional[Sequence[float]] = None,
                 value_range: Tuple[float, float] = (-math.inf, math.inf)):
        super().__init__()
        self.latent_dim, self.hidden, self.num_actions = int(latent_dim), int(hidden), int(num_actions)
        # The values a state can have, where replay tells (the graph's in-sample values): a latent the
        # head never saw, such as one the dynamics reach by a chain of actions replay never took,
        # cannot be worth more than the best replayed state.
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.reward_values = [float(v) for v in reward_values] if reward_values else []
        self.register_buffer("_values", torch.tensor(self.reward_values, dtype=torch.float32), persistent=False)
        # Classes are not weighted by their rarity: the search maximizes over what the heads predict,
        # so a reward predicted where there is none (a rare class weighted up) is sought out, while
        # one missed next to a goal still shows in the value of the states beside it.
        self.reward = _mlp(self.latent_dim, self.hidden, max(1, len(self.reward_values)))
        self.end = _mlp(self.latent_dim, self.hidden)
        self.value = _mlp(self.latent_dim, self.hidden, VALUE_HEADS)
        self.policy = _mlp(self.latent_dim, self.hidden, self.num_actions)

    def reward_loss(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.reward_values:
            return ((self.reward(z).squeeze(-1) - target) ** 2).mean()
        return torch.nn.functional.cross_entropy(self.reward(z), self.reward_class(target))

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
        return inverse_scalar_transform(self.value(z).min(dim=-1).values).clamp(*self.value_range)


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
        return cls(name, heads, reward_ref, spec_discount(spec, discount))

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
    policy_agreement: float  # the prior's argmax is a best action, on real states where not every action is
    graph_states: int = 0  # distinct observations when the values came from the replay graph, else 0

    def to_dict(self) -> dict:
        return asdict(self)


def replay_transitions(replay) -> Tuple[np.ndarray, ...]:
    """Every stored transition whose successor is still stored: (obs, action, reward, next_obs,
    terminated), numpy, in storage order."""
    starts = _acted(replay)
    s, ns = starts % replay.capacity, replay.next[starts % replay.capacity] % replay.capacity
    return (replay.observations(s), replay.action[s], replay.reward[s], replay.observations(ns),
            replay.terminal[ns] & replay.final[ns])


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


@dataclass
class _Replayed:
    """What refit fits on, from the replay's chains (unroll_chains), all on the agent's device.

    States are the distinct real states on the chains (rows of `z_real`); transitions are the
    (prev -> next) pairs along them, in one order shared by `prev`, `next`, `reward`."""

    obs: np.ndarray  # [U, ...] each state's observation
    z_real: torch.Tensor  # [U, D] the representation's latents of the states
    ended: torch.Tensor  # [U] bool: an episode ended on arriving there (the env's end, or the task's)
    prev: torch.Tensor  # [T] state row each transition leaves
    next: torch.Tensor  # [T] state row it reaches
    reward: torch.Tensor  # [T] the new reward of each transition
    action: np.ndarray  # [T] the action each transition took
    z_dyn: torch.Tensor  # [T, D] the dynamics' latent each transition reaches, unrolled from a replayed state
    transitions: int  # replayed transitions (unroll starts)
    reward_values: Optional[list]  # the reward's few distinct values, or None (regressed)


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
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = _replayed(agent, fn, name)
    discount = agent.config.discount if discount is None else float(discount)
    state_class, graph = observation_classes(data.obs), None
    if states_repeat(state_class):
        graph = replay_graph(state_class, data.prev.cpu().numpy(), data.next.cpu().numpy(), data.action,
                             data.reward.cpu().numpy(), data.ended.cpu().numpy(), agent.num_actions, discount)
    value_range = (-math.inf, math.inf) if graph is None else (float(graph.value.min()), float(graph.value.max()))
    heads = RefitHeads(data.z_real.shape[1], hidden, agent.num_actions, data.reward_values,
                       value_range).to(agent.device)
    fit = dict(steps=steps, batch_size=batch_size, lr=lr, rng=rng)
    fit_set = _fit_set(data)  # where the value and the prior are fitted, computed once for both
    reward_mse, end_accuracy = _fit_reward_and_end(heads, data, **fit)
    if graph is not None:
        td_error = _fit_value_to(heads, fit_set, torch.as_tensor(graph.value, dtype=torch.float32, device=agent.device),
                                 **fit)
        best = torch.as_tensor(graph.best_actions, device=agent.device)
    else:
        td_error = _fit_value(heads, data, fit_set, discount, target_every, **fit)
        best = _searched_actions(heads, data, agent, RefitObjective(name, heads.eval(), reward, discount), seed)
    agreement = _fit_prior(heads, data, fit_set, best, **fit)
    agent.add_refit(name, heads, reward)
    agent.set_objective({"name": RefitObjective.kind, "head": name, "discount": discount})
    report = RefitReport(name=name, reward=reward, transitions=data.transitions, unrolled=len(data.prev),
                         steps=int(steps), wall_s=time.perf_counter() - start, reward_mse=reward_mse,
                         end_accuracy=end_accuracy, value_td_error=td_error, policy_agreement=agreement,
                         graph_states=graph.classes if graph is not None else 0)
    if log is not None:
        log(f"refit {PREFIX}{name}: {report.transitions:,} transitions ({report.unrolled:,} unrolled), {steps} "
            f"steps, {report.wall_s:.1f} s | reward MSE {reward_mse:.4f}, end accuracy {end_accuracy:.3f}, "
            f"value error {td_error:.3f}, prior agreement {agreement:.3f}"
            + (f" | values from the replay graph of {report.graph_states:,} distinct states"
               if report.graph_states else ""))
    return report


def _replayed(agent, fn, name: str) -> _Replayed:
    replay, cap, device, model = agent.replay, agent.replay.capacity, agent.device, agent.model
    idx = unroll_chains(replay, agent.config.unroll_steps)
    if len(idx) == 0:
        raise ValueError("the run's replay holds no complete transition to refit on")
    states = np.unique(idx[idx >= 0])
    sid = np.where(idx >= 0, np.searchsorted(states, np.maximum(idx, 0)), -1)  # [N, K+1] -> row of `states`
    obs = replay.observations(states % cap)
    ended = replay.terminal[states % cap] & replay.final[states % cap]
    if hasattr(fn, "ends"):
        ended |= np.asarray(fn.ends(obs), bool) & _arrived(replay, states)
    real = sid[:, 1:] >= 0  # [N, K] transition k-1 -> k happened
    prev, nxt = sid[:, :-1][real], sid[:, 1:][real]
    prev_g, next_g = states[prev] % cap, states[nxt] % cap
    rewards = _checked(name, fn, obs[prev], replay.action[prev_g], replay.reward[prev_g], obs[nxt],
                       replay.terminal[next_g] & replay.final[next_g])
    with torch.no_grad():  # the frozen model's latents, computed once
        z_real = _latents(model, obs)  # [U, D]
        unrolled = _unroll(model, z_real[torch.as_tensor(sid[:, 0], device=device)],
                           torch.as_tensor(replay.action[idx[:, :-1] % cap], device=device))
    distinct = np.unique(rewards)
    return _Replayed(obs=obs, z_real=z_real, ended=torch.as_tensor(ended, device=device),
                     prev=torch.as_tensor(prev, device=device), next=torch.as_tensor(nxt, device=device),
                     reward=torch.as_tensor(rewards, device=device), action=replay.action[prev_g].astype(np.int64),
                     z_dyn=unrolled[torch.as_tensor(real, device=device)], transitions=len(idx),
                     reward_values=distinct.tolist() if len(distinct) <= MAX_REWARD_CLASSES else None)


def _batches(n: int, steps: int, batch_size: int, rng: np.random.Generator, device):
    for _ in range(steps):
        yield torch.as_tensor(rng.integers(0, n, batch_size), device=device)


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _fit_reward_and_end(heads: RefitHeads, data: _Replayed, steps: int, batch_size: int, lr: float,
                        rng: np.random.Generator) -> Tuple[float, float]:
    """The reward and the end of each real transition, at the dynamics latent it reaches;
    returns (reward MSE, end accuracy) after fitting."""
    ends = data.ended[data.next].float()
    pos = float(ends.mean())
    pos_weight = torch.tensor((1 - pos) / max(pos, 1e-3), device=ends.device)  # ends are rare: balance them
    opt = torch.optim.Adam(list(heads.reward.parameters()) + list(heads.end.parameters()), lr=lr)
    for i in _batches(len(ends), steps, batch_size, rng, ends.device):
        _step(opt, heads.reward_loss(data.z_dyn[i], data.reward[i]) + torch.nn.functional.binary_cross_entropy_with_logits(
            heads.end_logit(data.z_dyn[i]), ends[i], pos_weight=pos_weight))
    with torch.no_grad():
        return (float(((heads.reward_of(data.z_dyn) - data.reward) ** 2).mean()),
                float(((heads.end_logit(data.z_dyn) > 0).float() == ends).float().mean()))


def _fit_value(heads: RefitHeads, data: _Replayed, fit_set: tuple, discount: float, target_every: int, steps: int,
               batch_size: int, lr: float, rng: np.random.Generator) -> float:
    """In-sample value iteration (module docstring): every fitted latent, a state's real one or a
    dynamics latent reaching it, is paired with a transition out of that state, and regressed to
    the upper expectile of r + discount * V~(next real state); a state the episode ended in is
    worth 0. Returns the mean |error| in h(x)-space over the last 100 steps."""
    device = data.z_real.device
    fit_latents, fit_sid, fit_tr = fit_set
    live_next = (~data.ended[data.next]).float()
    target_net = RefitHeads(heads.latent_dim, heads.hidden, heads.num_actions, heads.reward_values).to(device)
    opt = torch.optim.Adam(heads.value.parameters(), lr=lr)
    td = []
    for step, i in enumerate(_batches(len(fit_latents), steps, batch_size, rng, device)):
        if step % target_every == 0:
            target_net.load_state_dict(heads.state_dict())
        j = fit_tr[i]
        with torch.no_grad():
            target = data.reward[j] + discount * live_next[j] * target_net.value_of(data.z_real[data.next[j]])
            target = torch.where(data.ended[fit_sid[i]], torch.zeros_like(target), target)
        err = scalar_transform(target).unsqueeze(-1) - heads.value(fit_latents[i])
        _step(opt, (torch.where(err < 0, 1.0 - EXPECTILE, EXPECTILE) * err ** 2).mean())
        td.append(float(err.detach().abs().mean()))
    return float(np.mean(td[-100:]))


def _fit_set(data: _Replayed) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(latents, their state rows, a transition out of each state) where the value and the prior
    are fitted: the real latent of every state a transition leaves, and every dynamics latent of a
    state that a transition leaves or an episode ended in."""
    device, U = data.z_real.device, len(data.z_real)
    prev, nxt = data.prev.cpu().numpy(), data.next.cpu().numpy()
    order = np.argsort(prev, kind="stable")
    first = np.searchsorted(prev[order], np.arange(U))
    has_out = first < len(prev)
    has_out[has_out] = prev[order][first[has_out]] == np.arange(U)[has_out]
    out_of = np.where(has_out, order[np.minimum(first, len(prev) - 1)], -1)  # a transition out of each state
    dyn_out = out_of[nxt]
    keep = torch.as_tensor((dyn_out >= 0) | data.ended.cpu().numpy()[nxt], device=device)
    return (torch.cat([data.z_real[data.prev], data.z_dyn[keep]]), torch.cat([data.prev, data.next[keep]]),
            torch.cat([torch.arange(len(prev), device=device),
                       torch.as_tensor(np.maximum(dyn_out, 0), device=device)[keep]]))


def _fit_value_to(heads: RefitHeads, fit_set: tuple, value: torch.Tensor, steps: int, batch_size: int,
                  lr: float, rng: np.random.Generator) -> float:
    """Every fitted latent (_fit_set) regressed to its state's value [U] (the replay graph's: no
    bootstrapping on the head itself). Returns the mean |error| in h(x)-space over the last 100 steps."""
    latents, sid, _ = fit_set
    target = scalar_transform(value)
    opt = torch.optim.Adam(heads.value.parameters(), lr=lr)
    errors = []
    for i in _batches(len(latents), steps, batch_size, rng, latents.device):
        err = target[sid[i]].unsqueeze(-1) - heads.value(latents[i])
        _step(opt, (err ** 2).mean())
        errors.append(float(err.detach().abs().mean()))
    return float(np.mean(errors[-100:]))


def _searched_actions(heads: RefitHeads, data: _Replayed, agent, objective: "RefitObjective",
                      seed: int) -> torch.Tensor:
    """[U, A] bool: the action a search under the fitted objective (uniform prior) chooses at each
    replayed state."""
    search = dataclasses.replace(agent.config.search, prior="uniform")
    heads.eval()
    with torch.no_grad():
        chosen = np.concatenate([plan(agent.model, objective, data.obs[i:i + 1024], search,
                                      rng=np.random.default_rng(seed), add_noise=False, deterministic=True).action
                                 for i in range(0, len(data.obs), 1024)])
    best = torch.zeros((len(data.obs), heads.num_actions), dtype=torch.bool, device=data.z_real.device)
    best[torch.arange(len(data.obs)), torch.as_tensor(chosen, device=best.device)] = True
    return best


def _fit_prior(heads: RefitHeads, data: _Replayed, fit_set: tuple, best: torch.Tensor, steps: int, batch_size: int,
               lr: float, rng: np.random.Generator) -> float:
    """The objective's own policy prior: at each replayed state the best actions `best` [U, A]
    (shared equally; uniform where there is none), smoothed, imitated on the state's real and
    dynamics latents. A target of the best actions, not of a search's visit shares: shares of
    near-tied actions give a prior too flat to steer the next search. Returns the share of states
    where some but not all actions are best (elsewhere any argmax would count) whose fitted
    prior's argmax is one of them."""
    A = heads.num_actions
    b = best.float()
    n_best = b.sum(-1, keepdim=True)
    share = torch.where(n_best > 0, b / n_best.clamp(min=1.0), torch.full_like(b, 1 / A))
    pi = PRIOR_SMOOTHING / A + (1.0 - PRIOR_SMOOTHING) * share
    latents, sid, _ = fit_set
    heads.train()
    opt = torch.optim.Adam(heads.policy.parameters(), lr=lr)
    for i in _batches(len(latents), steps, batch_size, rng, latents.device):
        _step(opt, -(pi[sid[i]] * torch.log_softmax(heads.policy(latents[i]), dim=-1)).sum(-1).mean())
    heads.eval()
    with torch.no_grad():
        n_best = best.sum(-1)
        known = (n_best > 0) & (n_best < A)
        hit = best.gather(1, heads.policy(data.z_real).argmax(-1, keepdim=True)).squeeze(-1)
        return float(hit[known].float().mean()) if bool(known.any()) else float("nan")


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
