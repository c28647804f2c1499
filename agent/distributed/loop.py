"""The distributed training loop: self-play on Ray actors, the learner and replay in the driver.

    driver (this process)                                   self-play actors (N, num_cpus=1, no GPU)
      replay  <- ReplayWriter <- chunks of transitions  <-  SelfPlay.act over B envs each
      learner: replay_ratio training steps per env step
      weights -> ray.put once per weight_sync_interval  ->  fetched by an actor at its next chunk
      (reanalyze actors, M: searches for the policy targets of batches sampled ahead;
       the learner searches a share of each batch itself, so that neither side waits)

What a single-process run has, this loop has too: the same agent object (so the same callbacks,
evaluation, TensorBoard tags, checkpoints and --resume), the same ratio of training steps per
env step (`replay_ratio`, counted over every worker's env steps), visit counts over every worker's
transitions (writer.py), and the callbacks called once per vector step. It is not deterministic:
which actor's chunk arrives first depends on timing.

Staleness is bounded, not free-running: each actor has exactly one chunk (CHUNK_STEPS vector
steps) in flight. When its chunk arrives the driver hands it the next one with the newest
published weights, then writes the chunk into replay and takes the training steps it makes due,
while the actor collects. If the learner falls behind, actors wait for it; the curve per env step
keeps the single-process loop's replay ratio, and the acting weights are at most about
N chunks' training steps plus `weight_sync_interval` behind the learner's.

Faults: actors restart on death (max_restarts) and retry the call in flight (max_task_retries).
A call that fails anyway (RayActorError) closes that worker's open episodes as truncated and is
sent again; the restarted actor fetches the weights on its first call, since it has no version.
A failed reanalysis is done by the learner itself. Ctrl-C / SIGTERM (StopOnSignal) stops at the
next vector step, the callbacks write the checkpoint, and every actor is killed.
"""
from __future__ import annotations

import time
import warnings
from collections import deque
from typing import Deque, Dict, List, NamedTuple, Optional

import numpy as np
import ray
from ray.exceptions import RayActorError

from agent.distributed.actors import Chunk, ReanalyzeActor, SelfPlayActor, agent_spec, policy_snapshot
from agent.distributed.options import DistributedOptions
from agent.distributed.writer import ReplayWriter
from agent.learner import Batch, Draft
from agent.reanalyze import reanalyze_policies
from agent.selfplay import close_open_episodes

# Vector steps per actor call: enough to amortize a call (about a millisecond) against a search
# per step (about ten), few enough that the acting weights stay close to the learner's.
CHUNK_STEPS = 2
# The learner searches a share of each batch's roots itself, the reanalyze actors the rest: where
# the actors are slower than the learner (one of them on a 2-core machine), the learner would
# otherwise wait for them with its core idle. The share moves by SHARE_STEP after every batch:
# up when the learner waited IDLE_S or more for the actors' part, down when the actor had sat idle
# that long before the call (so it waits for work); unchanged while both sides are busy.
SHARE_STEP = 0.01
# Batches whose roots go to a reanalyze actor in one call: each call costs the driver and the actor
# Ray's fixed overhead, and on two cores two batches a call ran 133 env steps/s against 125 for one
# (four alternating runs each; README, "Scaling out").
CALL_BATCHES = 2
MAX_LOCAL_SHARE = 0.5
IDLE_S = 0.001
# Actors restart without limit (a preempted node, an OOM kill); a call in flight is retried on the
# restarted actor this many times before the driver sees the error.
MAX_RESTARTS = -1
MAX_TASK_RETRIES = 2
# Consecutive failed calls of one worker before the run gives up on it (it keeps dying at once).
MAX_FAILURES = 5
# Actor resources: one CPU each and no GPU, so a GPU on the driver's node stays the learner's.
ACTOR_RESOURCES = {"num_cpus": 1, "num_gpus": 0}
# Env seeds of worker w start at seed + SEED_STRIDE * (w + 1): apart from each other and from the
# single-process loop's (seed, seed + 1, ...) as long as num_envs < SEED_STRIDE.
SEED_STRIDE = 1000


class Publisher:
    """Weights in the object store: ray.put once per publication; calls pass the version and the
    ObjectRef (inside a list, so that Ray passes the reference and the actor fetches it only when
    its version is older)."""

    def __init__(self):
        self.version = 0
        self.box: List[ray.ObjectRef] = []

    def publish(self, snapshot: dict) -> None:
        self.box = [ray.put(snapshot)]  # the previous publication is freed once no call holds it
        self.version += 1


class _Queued(NamedTuple):
    """A drafted batch waiting for its reanalyzed policies."""

    draft: Draft
    local_roots: np.ndarray  # the roots the learner searches itself
    ref: Optional[ray.ObjectRef]  # the actor call with the rest, or None
    lo: int  # this batch's rows [lo, hi) in that call's answer
    hi: int
    first: bool  # the call's first batch: the one whose wait balances the share


class RemoteReanalysis:
    """Batches whose reanalyzed policies are searched by reanalyze actors, CALL_BATCHES to a call
    and `depth` batches ahead:
    while the learner trains on one batch, the actors search the roots of the next ones. Those
    were sampled a few training steps earlier (their priorities are that much older, as with
    AgentConfig.batched_reanalyze). The target network is published whenever the learner copies it.
    The learner searches `local_share` of each batch's roots itself (see SHARE_STEP), with its own
    target network, which may be one copy newer than the actors' for a batch drafted before a copy."""

    def __init__(self, agent, actors: list):
        self.agent, self.actors = agent, actors
        self.depth = 2 * len(actors) * CALL_BATCHES  # one call searching and one queued per actor
        self.queue: Deque[_Queued] = deque()
        self.target = Publisher()
        self._target_copy = None  # the learner's target-copy count the published target is from
        self._next = 0

    @property
    def local_share(self) -> float:
        """Kept on the agent, so that its resume file carries it to the next run."""
        return self.agent.reanalysis_local_share

    @local_share.setter
    def local_share(self, share: float) -> None:
        self.agent.reanalysis_local_share = share

    def _sync_target(self) -> None:
        learner = self.agent.learner
        copy = learner.train_steps // learner.config.target_update_interval
        if copy != self._target_copy:
            self.target.publish(policy_snapshot(learner.target_model, self.agent))
            self._target_copy = copy

    def _submit(self, beta: float) -> None:
        a = self.agent
        drafts = [a.learner.draft(a.replay, a.objective, a.rng, a.num_timesteps, beta) for _ in range(CALL_BATCHES)]
        all_roots = [d.roots for d in drafts]  # gathered once: for images a copy of every root's stack
        parts, spans, start = [], [], 0
        for roots in all_roots:
            local = int(round(self.local_share * len(roots)))
            parts.append(roots[local:])
            spans.append((local, start, start + len(roots) - local))
            start += len(roots) - local
        ref = None
        if start:
            actor = self.actors[self._next % len(self.actors)]
            self._next += 1
            ref = actor.reanalyze.remote(self.target.version, self.target.box, np.concatenate(parts))
        for i, (d, roots, (local, lo, hi)) in enumerate(zip(drafts, all_roots, spans)):
            self.queue.append(_Queued(d, roots[:local], ref if hi > lo else None, lo, hi, i == 0))

    def next_batch(self, beta: float) -> Batch:
        """The oldest drafted batch, finished; the pipeline is refilled before waiting for it."""
        self._sync_target()
        while len(self.queue) < self.depth + 1:
            self._submit(beta)
        q = self.queue.popleft()
        parts = [self._search(q.local_roots)] if len(q.local_roots) else []
        if q.ref is not None:
            asked = time.perf_counter()
            try:
                policies, actor_idle = ray.get(q.ref)
                policies = policies[q.lo:q.hi]
            except RayActorError:  # the actor restarts by itself; this batch's part is searched here
                policies, actor_idle = self._search(q.draft.roots[len(q.local_roots):]), 0.0
            parts.append(policies)
            if q.first:
                self._balance(learner_waited=time.perf_counter() - asked, actor_idle=actor_idle)
        if parts:
            q.draft.fill(np.concatenate(parts))
        return self.agent.learner.finish(self.agent.replay, q.draft)

    def _balance(self, learner_waited: float, actor_idle: float) -> None:
        step = SHARE_STEP if learner_waited >= IDLE_S else -SHARE_STEP if actor_idle >= IDLE_S else 0.0
        self.local_share = min(MAX_LOCAL_SHARE, max(0.0, self.local_share + step))

    def _search(self, roots):
        a = self.agent
        return reanalyze_policies(a.learner.target_model, a.objective, a.config.search, roots, a.rng,
                                  a.config.reuse_reanalysis)


def connect(options: DistributedOptions) -> bool:
    """Join the cluster at --ray-address, or start a local Ray instance sized for the actors.
    Returns whether this call started Ray (and so must shut it down); an instance the caller
    started already (a notebook, the tests) is used as it is."""
    if ray.is_initialized():
        return False
    if options.ray_address:
        ray.init(address=options.ray_address, log_to_driver=False)
    else:
        # Logical CPUs for the actors, not the machine's count: every actor must be placed even on
        # a small machine (the learner in this process shares the cores with them).
        ray.init(num_cpus=options.workers + options.reanalyze_workers, include_dashboard=False,
                 log_to_driver=False)
    return True


def learn_distributed(agent, total_timesteps: int, callback, progress_bar: bool, options: DistributedOptions):
    """EZAgent.learn's contract, with self-play on `options.workers` Ray actors (module doc)."""
    started = connect(options)
    actors: list = []
    try:
        needed = options.workers + options.reanalyze_workers
        have = ray.cluster_resources().get("CPU", 0)
        if have < needed:
            warnings.warn(f"the Ray cluster has {have:g} CPUs and --workers {options.workers} "
                          f"--reanalyze-workers {options.reanalyze_workers} need {needed}: actors wait for "
                          f"CPUs (an autoscaler may add them)")
        return _Loop(agent, options, actors).run(total_timesteps, callback, progress_bar)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if started:
            ray.shutdown()


class _Loop:
    def __init__(self, agent, options: DistributedOptions, actors: list):
        self.agent, self.options = agent, options
        self.actors = actors  # every actor made, so that the caller kills them whatever happens

    def _make(self, cls, count: int, stride_offset: int) -> list:
        remote = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES, **ACTOR_RESOURCES)(cls)
        a, spec = self.agent, agent_spec(self.agent)
        made = [remote.remote(spec, w, a.seed + SEED_STRIDE * (w + 1 + stride_offset) + a.num_timesteps)
                for w in range(count)]
        self.actors.extend(made)
        return made

    def _take_over_episodes(self) -> Optional[dict]:
        """Episodes left open by this agent's own envs or by the checkpoint it was loaded from
        cannot continue in the actors' envs: they are closed as truncated. Returns their self-play
        state (whose explorers' counts the writer goes on with), or None."""
        a = self.agent
        state = a._saved_selfplay
        if a._selfplay is not None:
            state = a._selfplay.state_dict()
            if a._selfplay.venv is not None:
                a._selfplay.venv.close()
        if state is not None:
            close_open_episodes(a.replay, state["prev"], state["obs"], a.num_timesteps)
        a._selfplay, a._saved_selfplay = None, None
        return state

    def run(self, total_timesteps: int, callback, progress_bar: bool):
        a, o = self.agent, self.options
        c = a.config
        a._ensure_replay()
        state = self._take_over_episodes()
        saved_explorers = state and state.get("explorers")
        counter = None  # explorers whose rewards count the real transitions of every worker
        if a.aux is not None and a.aux.internal:
            counter = a.make_explorers()
            counter.load_state_dict(saved_explorers)
        writer = ReplayWriter(a.replay, o.workers, c.num_envs, a.obs_shape, a.obs_dtype, counter,
                              carried_explorers=saved_explorers)
        a._selfplay = writer  # what save_resume reads the episodes' state from
        end = a.num_timesteps + int(total_timesteps)
        workers = self._make(SelfPlayActor, o.workers, 0)
        reanalysis = RemoteReanalysis(a, self._make(ReanalyzeActor, o.reanalyze_workers, o.workers)) \
            if o.reanalyze_workers else None
        weights = Publisher()
        weights.publish(policy_snapshot(a.model, a))
        published_at = a.learner.train_steps
        callback = a._start_training(end, callback, progress_bar)

        def submit(w: int) -> ray.ObjectRef:
            return workers[w].run.remote(CHUNK_STEPS, a.num_timesteps / end, weights.version, weights.box)

        pending: Dict[ray.ObjectRef, int] = {submit(w): w for w in range(o.workers)}
        failures = [0] * o.workers
        stopped = False
        try:
            while a.num_timesteps < end and not stopped:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                if not ready:
                    continue
                w = pending.pop(ready[0])
                try:
                    chunk: Chunk = ray.get(ready[0])
                except RayActorError as e:
                    failures[w] += 1
                    if failures[w] >= MAX_FAILURES:
                        raise RuntimeError(f"self-play worker {w} failed {failures[w]} times in a row: {e}") from e
                    writer.close(w, a.num_timesteps)
                    pending[submit(w)] = w
                    continue
                failures[w] = 0
                pending[submit(w)] = w  # it collects the next chunk while this one trains
                writer.begin(w, chunk.incarnation, a.num_timesteps)
                for i, (t, report) in enumerate(zip(chunk.transitions, chunk.reports)):
                    following = chunk.transitions[i + 1].obs if i + 1 < len(chunk.transitions) else chunk.obs
                    writer.write(w, t, following, a.num_timesteps)
                    a._last_play = report
                    a._count_and_train(report, a.num_timesteps / end,
                                       reanalysis.next_batch if reanalysis is not None else None)
                    if reanalysis is not None and a._last_stats:  # logged with the training step's scalars
                        a._last_stats["train/reanalysis_local_share"] = reanalysis.local_share
                    if a.learner.train_steps - published_at >= o.weight_sync_interval:
                        weights.publish(policy_snapshot(a.model, a))
                        published_at = a.learner.train_steps
                    if callback.on_step() is False:
                        stopped = True
                    if stopped or a.num_timesteps >= end:
                        break
            callback.on_training_end()
            # Let the calls in flight finish (a chunk takes milliseconds) so that killing the
            # actors afterwards does not interrupt them mid-call.
            ray.wait(list(pending), num_returns=len(pending), timeout=5.0)
        finally:
            a._saved_selfplay, a._selfplay = writer.state_dict(), None
        return a
