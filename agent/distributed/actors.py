"""The Ray actors: plain classes here, made remote by the driver (loop.py) with their resources
and restart policy, so that this file says only what an actor does.

Both build their networks from the agent's spec exactly as EZAgent does (on the CPU) and take
their weights from the object store: every call names the newest published version and carries
its ObjectRef inside a list (so that Ray hands over the reference, not the value), and an actor
fetches the weights only when its version differs. A restarted actor has no version, so its first
call fetches them: the driver never has to notice a restart to re-sync an actor.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import ray
import torch

from agent.config import AgentConfig
from agent.reanalyze import reanalyze_policies
from agent.selfplay import SelfPlay, StepReport, Transition
from planners.config import SearchConfig
from planners.objectives import objective_from_spec


def agent_spec(agent) -> dict:
    """What an actor needs to build the agent's networks and envs (plain data)."""
    return {"env_id": agent.env_id, "config": agent.config.to_dict(), "seed": agent.seed,
            "env_module": agent.env_module, "wrappers": list(agent.wrappers)}


def policy_snapshot(model, agent) -> dict:
    """What acting or reanalyzing with `model` needs, on the CPU: its weights, the auxiliary value
    heads (objectives may use them), the objective and the search settings."""
    return {"model": _arrays(model.state_dict()),
            "aux": _arrays(agent.aux.heads.state_dict()) if agent.aux is not None else None,
            "objective": agent.objective.to_spec(), "search": dataclasses.asdict(agent.config.search)}


def _arrays(state: dict) -> dict:
    """A state dict as numpy arrays, whose data Ray keeps out of the pickle stream (for CartPole's
    weights a put took a third and a get a fifteenth of the torch tensors' time: README, "Scaling out").
    Shared with the parameters until ray.put copies them, which it does at once."""
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


def _tensors(arrays: dict) -> dict:
    """The state dict back from `_arrays` (writable copies: the object store's arrays are read-only)."""
    return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}


class _PolicyHolder:
    """An EZAgent built from `spec` on the CPU, kept at the newest published policy."""

    def __init__(self, spec: dict):
        torch.set_num_threads(1)  # one core per actor (num_cpus=1); more threads slow small nets down
        from agent.ez import EZAgent  # here, not at import: the driver imports this module too
        self.agent = EZAgent(spec["env_id"], AgentConfig.from_dict(spec["config"]), seed=spec["seed"],
                             device="cpu", env_module=spec["env_module"], wrappers=spec["wrappers"])
        self.version: Optional[int] = None
        self._objective_spec: Optional[dict] = None

    def sync(self, version: int, box: list) -> None:
        """Load the policy published as `version` (box = [ObjectRef]) unless it is loaded already."""
        if version == self.version:
            return
        snap = ray.get(box[0])
        a = self.agent
        a.model.load_state_dict(_tensors(snap["model"]))
        if a.aux is not None and snap["aux"] is not None:
            a.aux.heads.load_state_dict(_tensors(snap["aux"]))
        a.config.search = SearchConfig(**snap["search"])
        if snap["objective"] != self._objective_spec:
            a.objective = objective_from_spec(snap["objective"], a.config.discount, a.objective_context())
            self._objective_spec = snap["objective"]
        self.version = version


@dataclass
class Chunk:
    """Consecutive vector steps of one self-play actor, in order."""

    worker: int
    incarnation: str  # changes when the actor restarts: its envs started fresh episodes
    transitions: List[Transition]
    reports: List[StepReport]
    obs: np.ndarray  # [B, *obs] the observations after the last step (where the envs are now)
    weights_version: int  # the policy it acted with


class SelfPlayActor:
    """Self-play in B envs of its own (seeded `seed`, `seed` + 1, ...) with one batched search per
    step, returning its transitions to the driver, which writes them into the one replay."""

    def __init__(self, spec: dict, worker: int, seed: int):
        self.holder = _PolicyHolder(spec)
        self.worker = worker
        self.incarnation = uuid.uuid4().hex
        if ray.is_initialized() and ray.get_runtime_context().was_current_actor_reconstructed:
            # A restart re-runs this constructor with the same arguments: fresh seeds, so that it
            # does not replay the episodes its first incarnation played.
            seed = int(np.random.SeedSequence().generate_state(1)[0] % 2**31)
        a = self.holder.agent
        import envs
        venv = envs.make_vec(a.env_id, a.config.num_envs, seed, wrappers=a.env_wrappers(), env_module=a.env_module)
        self.selfplay = SelfPlay(venv, None, seed=seed, aux=a.aux, explorers=a.make_explorers())
        self.rng = np.random.default_rng(seed)  # search noise and action sampling

    def run(self, steps: int, progress: float, version: int, box: list) -> Chunk:
        """`steps` vector steps with the policy published as `version`; `progress`: the fraction of
        the run done (the visit temperature's schedule)."""
        self.holder.sync(version, box)
        a = self.holder.agent
        temperature = a.config.temperature_at(progress)
        transitions, reports = [], []
        for _ in range(int(steps)):
            t, report = self.selfplay.act(a.model, a.objective, a.config.search, temperature, self.rng)
            transitions.append(t)
            reports.append(report)
        return Chunk(self.worker, self.incarnation, transitions, reports, self.selfplay.obs.copy(), version)


class ReanalyzeActor:
    """Fresh policy targets for replayed observations, searched with the learner's target network
    (agent/reanalyze.py), off the learner's process."""

    def __init__(self, spec: dict, worker: int, seed: int):
        self.holder = _PolicyHolder(spec)
        self.rng = np.random.default_rng(seed)  # root noise
        self._done_at: Optional[float] = None  # when the last call returned

    def reanalyze(self, version: int, box: list, roots: np.ndarray) -> Tuple[np.ndarray, float]:
        """Policy targets [M, A] of one batched search from each of the M `roots`, and the seconds
        this actor sat idle before the call (the driver balances its own share by them)."""
        idle = 0.0 if self._done_at is None else time.perf_counter() - self._done_at
        self.holder.sync(version, box)
        a = self.holder.agent
        policies = reanalyze_policies(a.model, a.objective, a.config.search, roots, self.rng,
                                      a.config.reuse_reanalysis)
        self._done_at = time.perf_counter()
        return policies, idle
