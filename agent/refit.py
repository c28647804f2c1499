"""Refit: the search's objective for a new reward, fitted from a run's stored replay with no
environment steps (`train.py refit --checkpoint RUN --reward mymod:fn`).

The representation and dynamics stay frozen; three small heads over their latents are fitted:

    reward(z')  the new reward of the transition into z' (regressed on the real transitions in
                replay: z' = dynamics(representation(obs), action), target fn(obs, action,
                reward, next_obs, terminated))
    end(z')     whether the new task ends the episode there: the environment's termination or
                the task's own (`fn.ends(next_obs)` where the reward function has one), a logit
    value(z)    the new objective's value, by fitted value iteration over replayed latents with
                the learned model: V(z) <- max_a reward(z'_a) + discount * [not end(z'_a)] * V~(z'_a),
                z'_a = dynamics(z, a), on the replayed states and on their imagined successors (so
                the head is trained where the search will query it), V~ a periodically copied target

The objective they make (`refit:NAME`, a registered kind) puts reward(z') on the edges, value(z)
at the leaves and treats end(z') as absorbing (Objective.ends). Value iteration, not the replayed
returns: those are returns of the *old* policy, while the max over actions evaluates the policy the
search will follow under the new reward. The heads are stored in the checkpoint with the reward
function's 'module:attr' string, so the objective reloads.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from agent.aux_values import _checked
from common.imports import load_callable
from nets.support import inverse_scalar_transform, scalar_transform
from planners.objectives import DEFAULT_DISCOUNT, Objective, register

PREFIX = "refit:"


def _mlp(latent_dim: int, hidden: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(latent_dim, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))


class RefitHeads(torch.nn.Module):
    """reward, end (logit) and value (in h(x)-space) over latents; see the module docstring."""

    def __init__(self, latent_dim: int, hidden: int = 64):
        super().__init__()
        self.latent_dim, self.hidden = int(latent_dim), int(hidden)
        self.reward = _mlp(self.latent_dim, self.hidden)
        self.end = _mlp(self.latent_dim, self.hidden)
        self.value = _mlp(self.latent_dim, self.hidden)

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

    def describe(self) -> str:
        return (f"{PREFIX}{self.name} (discount={self.discount:g}): reward, episode end and value of "
                f"{self.reward_ref or 'a reward function'} fitted from replay over the frozen model's latents")

    def to_spec(self) -> dict:
        return {"name": self.kind, "head": self.name, "discount": self.discount}


@dataclass
class RefitReport:
    name: str
    reward: str
    transitions: int
    steps: int
    wall_s: float
    reward_mse: float  # on the real transitions, after fitting
    end_accuracy: float
    value_td_error: float  # mean |V - target| in h(x)-space over the last 100 steps

    def to_dict(self) -> dict:
        return asdict(self)


def replay_transitions(replay) -> Tuple[np.ndarray, ...]:
    """Every stored transition whose successor is still stored: (obs, action, reward, next_obs,
    terminated), numpy, in storage order."""
    size, total, cap = replay.size, replay.total, replay.capacity
    g = np.arange(total - size, total)
    s = g % cap
    nxt = replay.next[s]
    ok = ~replay.final[s] & (nxt >= 0) & (nxt >= total - size)
    s, ns = s[ok], nxt[ok] % cap
    return replay.obs[s], replay.action[s], replay.reward[s], replay.obs[ns], replay.terminal[ns] & replay.final[ns]


def refit(agent, reward: str, name: str = "refit", steps: int = 3000, batch_size: int = 256,
          hidden: int = 64, lr: float = 1e-3, target_every: int = 100, seed: int = 0, imagined: bool = False,
          log: Optional[Callable[[str], None]] = None) -> RefitReport:
    """Fit the `refit:NAME` heads for `reward` ('module:attr', fn(obs, action, reward, next_obs,
    terminated) -> [B]) on the agent's replay and set that objective on the agent. Needs an agent
    loaded with its training state (a resume.pt, or a run directory)."""
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
    obs, action, env_reward, next_obs, terminated = replay_transitions(agent.replay)
    if len(action) == 0:
        raise ValueError("the run's replay holds no complete transition to refit on")
    target_r = _checked(name, fn, obs, action, env_reward, next_obs, terminated)
    ends = terminated.copy()
    if hasattr(fn, "ends"):
        ends |= np.asarray(fn.ends(next_obs), bool)
    model, device = agent.model, agent.device
    A = agent.num_actions
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    with torch.no_grad():  # the frozen model's latents, computed once
        z0 = torch.cat([model.initial_inference(obs[i:i + 4096]).latent for i in range(0, len(obs), 4096)])
        z0 = z0.flatten(1)
        taken, _ = _successors(model, z0, torch.as_tensor(action, device=device))
    heads = RefitHeads(z0.shape[1], hidden).to(device)
    # 1. reward and end, supervised on the real transitions
    opt = torch.optim.Adam(list(heads.reward.parameters()) + list(heads.end.parameters()), lr=lr)
    r_t = torch.as_tensor(target_r, device=device)
    e_t = torch.as_tensor(ends, device=device, dtype=torch.float32)
    pos = float(e_t.mean())
    pos_weight = torch.tensor((1 - pos) / max(pos, 1e-3), device=device)  # ends are rare: balance them
    for _ in range(steps):
        i = torch.as_tensor(rng.integers(0, len(r_t), batch_size), device=device)
        loss = ((heads.reward_of(taken[i]) - r_t[i]) ** 2).mean() + torch.nn.functional.binary_cross_entropy_with_logits(
            heads.end_logit(taken[i]), e_t[i], pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    # 2. value iteration over replayed latents and their imagined successors
    with torch.no_grad():
        z1, t1 = _all_successors(model, z0, A)  # [N, A, D]: the replayed states' imagined successors
        states, succ, succ_terminal = z0, z1, t1
        if imagined:
            deeper = [_all_successors(model, z1[:, a], A) for a in range(A)]
            states = torch.cat([z0, z1.transpose(0, 1).flatten(0, 1)])  # where V is fitted, [M, D]
            succ = torch.cat([z1, *(z for z, _ in deeper)])  # their successors, [M, A, D]
            succ_terminal = torch.cat([t1, *(t for _, t in deeper)])
        flat = succ.flatten(0, 1)
        succ_r = heads.reward_of(flat).reshape(len(states), A)
        succ_live = (~((heads.end_logit(flat) > 0).reshape(len(states), A) | succ_terminal)).float()
    target_net = RefitHeads(z0.shape[1], hidden).to(device)
    opt = torch.optim.Adam(heads.value.parameters(), lr=lr)
    discount = agent.config.discount
    td = []
    for step in range(steps):
        if step % target_every == 0:
            target_net.load_state_dict(heads.state_dict())
        i = torch.as_tensor(rng.integers(0, len(states), batch_size), device=device)
        with torch.no_grad():
            v_next = target_net.value_of(succ[i].flatten(0, 1)).reshape(batch_size, A)
            target = (succ_r[i] + discount * succ_live[i] * v_next).max(dim=1).values
        err = heads.value(states[i]).squeeze(-1) - scalar_transform(target)
        loss = (err ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        td.append(float(err.detach().abs().mean()))
    heads.eval()
    with torch.no_grad():
        reward_mse = float(((heads.reward_of(taken) - r_t) ** 2).mean())
        end_accuracy = float(((heads.end_logit(taken) > 0).float() == e_t).float().mean())
    agent.add_refit(name, heads, reward)
    agent.set_objective(f"{PREFIX}{name}")
    report = RefitReport(name=name, reward=reward, transitions=int(len(action)), steps=int(steps),
                         wall_s=time.perf_counter() - start, reward_mse=reward_mse, end_accuracy=end_accuracy,
                         value_td_error=float(np.mean(td[-100:])))
    if log is not None:
        log(f"refit {PREFIX}{name}: {report.transitions:,} transitions, {steps} steps, {report.wall_s:.1f} s | "
            f"reward MSE {reward_mse:.4f}, end accuracy {end_accuracy:.3f}, value TD error {report.value_td_error:.3f}")
    return report


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
