#!/usr/bin/env python
"""How a LunarLander-v3 agent's greedy episodes end, and how well its model predicts what happens.

    python benchmarks/bench_lunarlander_failure.py --checkpoint RUN_DIR/resume.pt
        [--episodes 10] [--sims 0,1,5,50] [--horizons 1,5,10,20] [--replay-only] [--made-by COMMAND]
        [--search KEY=VALUE ...] [--out FILE]

Plays the evaluation protocol's episodes (agent/evaluation.py's starts for the checkpoint's seed)
once acting on the policy prior's most likely action (0 simulations), once one step greedy on the
value (`greedy`: each action's predicted reward plus the discounted value after it, as the audit's),
and once searching at each of --sims simulations (with the checkpoint's own search settings, or
those changed by `--search prior=uniform`, `--search algorithm=gumbel`: is it the prior the search
leans on, or the model it searches, that acts worse than one step of the value?). Every episode is
classified by how it ended: `landed` (the lander came to rest: +100), `crashed` (its body touched
the ground: -100), `off` (it left the screen: -100) or `time` (truncated at 1,000 steps), with its
length, the step both legs first touched, and how often it fired each engine.

Along the episodes of the search at the checkpoint's own simulation count, and along the one-step
greedy ones (which, where a run hovers, are the ones that land), it then measures the model against
what happened: for every start t and horizon k, the sum of the rewards the model predicts along
the k actions actually taken, against the sum of the rewards received (mean error and mean
absolute error, split by whether a leg touched the ground at t), and the value head at t against
the discounted return actually received to the end (episodes that ended before the time limit
only), also by how many steps the episode had left. The transitions that paid the terminal +-100
are reported on their own: the model's one-step reward there, against the reward. From a
resume.pt it also reports the n of the n-step value targets the run's replay hands the learner,
weighted as prioritized sampling draws them, and how the self-play episodes it holds ended, per
10,000 environment steps: a landing is seen by the value only where self-play completes one; and
what self-play did where the lander sat on the ground (how often it fired an engine there, and how
often its search chose to), since only a run of quiet steps there earns the landing.
`--replay-only` skips the episodes and reports the replay's part alone. The last line is JSON.
Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from result_line import emit  # noqa: E402  (benchmarks/, the script's own folder)

ENV_ID = "LunarLander-v3"
ACTIONS = ("noop", "left", "main", "right")
PAID_LANDING = 50  # a terminating reward at least this is the +100 of coming to rest (a crash pays -100)


def both_legs_down(obs: np.ndarray) -> np.ndarray:
    """[N] bool from observations [N, 8]: both leg-contact entries set."""
    return (obs[:, 6] > 0.5) & (obs[:, 7] > 0.5)


def newest_frame(obs: np.ndarray) -> np.ndarray:
    """One observation [8] from what the agent's env returns: itself, or the last (newest) of a
    frame-stacked run's [k, 8] (gymnasium's FrameStackObservation)."""
    return obs[-1] if obs.ndim == 2 else obs


def ending(env, obs, terminated: bool) -> str:
    """How a finished episode ended (gymnasium's LunarLander: game_over is the body's contact);
    `obs` is one observation [8]."""
    u = env.unwrapped
    if not terminated:
        return "time"
    if u.game_over:
        return "crashed"
    if abs(obs[0]) >= 1.0:
        return "off"
    return "landed" if not u.lander.awake else "other"


def play(act, seed: int, episodes: int, wrappers=()):
    """Episodes from the evaluation protocol's starts (its env, with the run's `wrappers`), acted by
    `act(obs batch) -> actions`: one dict per episode (return, length, ending, first step with both
    legs down, engine counts) and its trajectory (the agent's observations [T+1, ...], their newest
    frames [T+1, 8], actions [T], rewards [T])."""
    import envs
    from agent.evaluation import eval_seed

    env_list = [envs.make(ENV_ID, None, wrappers=wrappers) for _ in range(episodes)]
    obs = [env.reset(seed=eval_seed(seed) + i)[0] for i, env in enumerate(env_list)]
    trajectories = [{"obs": [o], "frames": [newest_frame(o)], "actions": [], "rewards": []} for o in obs]
    endings = [""] * episodes
    active = list(range(episodes))
    while active:
        actions = np.asarray(act(np.stack([obs[i] for i in active])))
        still = []
        for a, i in zip(actions, active):
            o, r, terminated, truncated, _ = env_list[i].step(int(a))
            obs[i] = o
            t = trajectories[i]
            t["obs"].append(o)
            t["frames"].append(newest_frame(o))
            t["actions"].append(int(a))
            t["rewards"].append(float(r))
            if terminated or truncated:
                endings[i] = ending(env_list[i], t["frames"][-1], terminated)
            else:
                still.append(i)
        active = still
    rows = []
    for t, end in zip(trajectories, endings):
        for key, dtype in (("obs", np.float32), ("frames", np.float32), ("actions", None), ("rewards", None)):
            t[key] = np.asarray(t[key], dtype)
        both = np.flatnonzero(both_legs_down(t["frames"][1:]))
        rows.append({"return": round(float(t["rewards"].sum()), 1), "length": len(t["actions"]), "ending": end,
                     "both_legs_first_step": int(both[0]) + 1 if len(both) else None,
                     "steps_both_legs_down": int(len(both)),
                     "engine_counts": {name: int((t["actions"] == k).sum()) for k, name in enumerate(ACTIONS)}})
        t["ending"] = end
    return rows, trajectories


def summarize(rows) -> dict:
    endings = [r["ending"] for r in rows]
    return {"mean_return": round(float(np.mean([r["return"] for r in rows])), 1),
            "mean_length": round(float(np.mean([r["length"] for r in rows])), 1),
            "ended_by": {k: endings.count(k) for k in ("landed", "crashed", "off", "time", "other")},
            "episodes": rows}


def model_errors(agent, trajectories, horizons, stride: int = 2) -> dict:
    """The model's k-step predicted reward sums along the actions taken, and its value, against
    what the episodes received."""
    import torch

    model, gamma = agent.model, agent.config.discount
    by_horizon = {}
    for k in horizons:
        errors, grounded = [], []
        for t in trajectories:
            starts = np.arange(0, len(t["actions"]) - k + 1, stride)
            if not len(starts):
                continue
            with torch.no_grad():
                latent = model.initial_inference(torch.as_tensor(t["obs"][starts])).latent
                predicted = np.zeros(len(starts))
                for j in range(k):
                    out = model.recurrent_inference(latent, torch.as_tensor(t["actions"][starts + j]))
                    predicted += out.reward.cpu().numpy()
                    latent = out.latent
            received = np.array([t["rewards"][s:s + k].sum() for s in starts])
            errors.append(predicted - received)
            grounded.append((t["frames"][starts, 6] > 0.5) | (t["frames"][starts, 7] > 0.5))
        err, ground = np.concatenate(errors), np.concatenate(grounded)
        by_horizon[str(k)] = {
            part: {"n": int(mask.sum()), "mean_error": round(float(err[mask].mean()), 2) if mask.any() else None,
                   "mean_abs_error": round(float(np.abs(err[mask]).mean()), 2) if mask.any() else None}
            for part, mask in (("all", np.ones_like(ground)), ("airborne", ~ground), ("leg_down", ground))}
    values, returns = [], []
    terminal = []
    for t in trajectories:
        if t["ending"] == "time":  # what follows the time limit is unknown: no return to compare with
            continue
        with torch.no_grad():
            values.append(model.initial_inference(torch.as_tensor(t["obs"][:-1])).value.cpu().numpy())
            last = model.recurrent_inference(model.initial_inference(torch.as_tensor(t["obs"][-2:-1])).latent,
                                             torch.as_tensor(t["actions"][-1:])).reward.cpu().numpy()
        g = np.zeros(len(t["rewards"]))
        acc = 0.0
        for i in range(len(g) - 1, -1, -1):
            acc = t["rewards"][i] + gamma * acc
            g[i] = acc
        returns.append(g)
        terminal.append({"ending": t["ending"], "reward": round(float(t["rewards"][-1]), 1),
                         "predicted": round(float(last[0]), 1)})
    value_part = None
    if values:
        dv = np.concatenate(values) - np.concatenate(returns)
        to_end = np.concatenate([np.arange(len(v), 0, -1) for v in values])  # steps left, 1 at the last
        value_part = {"n": int(len(dv)), "mean_error": round(float(dv.mean()), 2),
                      "mean_abs_error": round(float(np.abs(dv).mean()), 2),
                      "mean_error_by_steps_left": {
                          f"{lo}-{hi}": round(float(dv[(to_end >= lo) & (to_end < hi)].mean()), 1)
                          for lo, hi in ((1, 5), (5, 25), (25, 100), (100, 1000))
                          if ((to_end >= lo) & (to_end < hi)).any()}}
    return {"reward_sum_error_by_horizon": by_horizon, "value_vs_discounted_return": value_part,
            "terminal_transitions": terminal}


def sampled_horizons(agent) -> dict | None:
    """The n of the n-step value targets the run's replay hands the learner, weighted as its
    prioritized sampling draws them (agent/targets.py: the horizon shrinks with the data's age);
    None for a model.pt, which holds no replay."""
    from agent.targets import td_horizon

    replay, c = agent.replay, agent.config
    if replay is None or replay.size == 0:
        return None
    n = replay.size
    p = replay.priority[:n] ** replay.alpha
    p = p / p.sum()
    horizon = td_horizon(agent.num_timesteps - replay.env_step[:n], c.td_steps, c.td_correction_interval)
    return {"td_steps": c.td_steps, "td_correction_interval": c.td_correction_interval,
            "mean": round(float((p * horizon).sum()), 2),
            "share": {str(h): round(float(p[horizon == h].sum()), 3) for h in range(1, c.td_steps + 1)}}


def episode_ends(replay) -> tuple[np.ndarray, np.ndarray]:
    """(slots of the final entries, slots of the acted state whose transition ended each episode),
    for the episodes whose last acted state the replay still holds."""
    final = np.flatnonzero(replay.final[:replay.size])
    last = replay.prev[final]
    live = last >= replay.total - replay.capacity
    return final[live], last[live] % replay.capacity


def self_play_endings(agent, bucket: int = 10_000) -> dict | None:
    """How the self-play episodes held in the run's replay ended, per `bucket` environment steps of
    their end: `landed` (terminated on a reward >= 50: the +100 of coming to rest), `crashed_or_off`
    (terminated on <= -50), `other` (terminated otherwise) or `time` (truncated: the time limit, or a
    resume that could not continue the episode). Explorers' episodes (agent/explore.py) are left
    out. `time_legs_down` counts the `time` endings whose last observation has both legs on the
    ground: a lander that sat there without coming to rest. None for a model.pt, which holds no
    replay."""
    replay = agent.replay
    if replay is None or replay.size == 0:
        return None
    final, last = episode_ends(replay)
    played = ~replay.explore[last]
    final, last = final[played], last[played]
    reward, terminal, step = replay.reward[last], replay.terminal[final], replay.env_step[final]
    obs = replay.obs[final]  # the newest frame where observations are frame stacks
    legs_down = both_legs_down(obs)
    kind = np.where(~terminal, "time", np.where(reward >= PAID_LANDING, "landed",
                                                 np.where(reward <= -PAID_LANDING, "crashed_or_off", "other")))
    rows = {}
    for lo in range(int(step.min()) // bucket * bucket, int(step.max()) + 1, bucket):
        in_bucket = (step >= lo) & (step < lo + bucket)
        counts = {k: int((kind[in_bucket] == k).sum()) for k in ("landed", "crashed_or_off", "other", "time")}
        rows[str(lo)] = {**counts, "time_legs_down": int((in_bucket & (kind == "time") & legs_down).sum())}
    return {"bucket_env_steps": bucket, "episodes_ended": rows}


def self_play_at_rest(agent, bucket: int = 10_000, speed: float = 0.05) -> dict | None:
    """What self-play did where the lander sat on the ground, per `bucket` environment steps: its
    acted states with both legs down and both velocity entries under `speed` (observation units),
    explorers' left out. The +100 comes once the body has been still for about half a second
    (Box2D's sleep timer, which the observation does not show), so only a run of quiet steps there
    earns it. Per bucket: `states` at rest, `fired` (share whose action fired an engine),
    `search_fired` (share whose search's most visited action fires one: the choice itself, not the
    visit temperature's sampling) and `landed_per_quiet_step` (share of the noop steps there that
    paid the landing). None for a model.pt, which holds no replay."""
    replay = agent.replay
    if replay is None or replay.size == 0:
        return None
    n = replay.size
    obs = replay.obs[:n]  # the newest frame where observations are frame stacks
    rest = (both_legs_down(obs) & (np.abs(obs[:, 2]) < speed) & (np.abs(obs[:, 3]) < speed)
            & ~replay.explore[:n] & ~replay.final[:n])  # a final entry closes an episode: nothing acted there
    if not rest.any():
        return {"bucket_env_steps": bucket, "speed_below": speed, "at_rest": {}}
    action, step = replay.action[:n], replay.env_step[:n]
    searched = replay.policy[:n].argmax(-1)
    # A landing: the acted state whose transition terminated the episode on the +100 (as self_play_endings).
    final, last = episode_ends(replay)
    landed = np.zeros(n, bool)
    landed[last] = replay.terminal[final] & (replay.reward[last] >= PAID_LANDING)
    rows = {}
    for lo in range(int(step[rest].min()) // bucket * bucket, int(step[rest].max()) + 1, bucket):
        here = rest & (step >= lo) & (step < lo + bucket)
        if not here.any():
            continue
        quiet = here & (action == 0)
        rows[str(lo)] = {"states": int(here.sum()), "fired": round(float((action[here] != 0).mean()), 3),
                         "search_fired": round(float((searched[here] != 0).mean()), 3),
                         "landed_per_quiet_step": round(float(landed[quiet].mean()), 4)
                         if quiet.any() else None}
    return {"bucket_env_steps": bucket, "speed_below": speed, "at_rest": rows}


def searched_with(own, items):
    """`own` (a SearchConfig) with the --search KEY=VALUE items applied; a ValueError naming the
    flag for a key SearchConfig lacks or a value its own checks refuse."""
    from agent.config import parse_set

    try:
        return dataclasses.replace(own, **parse_set(items))
    except TypeError as e:  # an unknown field
        fields = ", ".join(f.name for f in dataclasses.fields(own))
        raise ValueError(f"--search {' '.join(items)}: {e}; the keys are SearchConfig's: {fields}") from None
    except ValueError as e:
        raise ValueError(f"--search {' '.join(items)}: {e}") from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a LunarLander-v3 run's model.pt or resume.pt")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--sims", default="0,1,5,50", help="simulation counts to play at (0: the prior's argmax)")
    p.add_argument("--horizons", default="1,5,10,20", help="model unroll lengths compared with the episodes")
    p.add_argument("--made-by", metavar="COMMAND", default=None,
                   help="the train.py command (and step) that wrote --checkpoint, recorded with the result")
    p.add_argument("--replay-only", action="store_true",
                   help="only the replay's part (sampled n-step horizons, self-play endings): no episodes played")
    p.add_argument("--search", action="append", default=[], metavar="KEY=VALUE",
                   help="a search setting the played searches change (SearchConfig's keys: prior=uniform, "
                        "algorithm=gumbel); repeatable")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", metavar="FILE", help="also write the last line's JSON to FILE")
    args = p.parse_args()
    sims = [int(s) for s in args.sims.split(",") if s]
    horizons = [int(k) for k in args.horizons.split(",") if k]
    if any(s < 0 for s in sims) or any(k < 1 for k in horizons):
        p.error("--sims must be >= 0 each and --horizons >= 1 each")

    import torch

    from agent.ez import EZAgent
    from agent.studies.audit import greedy_policy, prior_policy, search_policy

    torch.set_num_threads(args.threads)
    agent = EZAgent.load(args.checkpoint, device="cpu")
    if agent.env_id != ENV_ID:
        p.error(f"--checkpoint holds a {agent.env_id} agent; this script reads {ENV_ID} episodes")
    replay_part = {"sampled_td_horizon": sampled_horizons(agent), "self_play_endings": self_play_endings(agent),
                   "self_play_at_rest": self_play_at_rest(agent)}
    header = {"benchmark": "lunarlander_failure", "checkpoint": str(args.checkpoint), "made_by": args.made_by,
              "seed": agent.seed, "env_steps": int(agent.num_timesteps),
              "num_simulations": agent.config.search.num_simulations}
    if args.replay_only:
        if replay_part["self_play_endings"] is None:
            p.error("--replay-only needs a resume.pt (a model.pt holds no replay)")
        for lo, row in replay_part["self_play_endings"]["episodes_ended"].items():
            print(f"self-play episodes ended from {lo} steps: {row}", flush=True)
        for lo, row in replay_part["self_play_at_rest"]["at_rest"].items():
            print(f"self-play at rest from {lo} steps: {row}", flush=True)
        emit({**header, **replay_part}, args.out)
        return
    own = agent.config.search
    if args.search:
        try:
            own = searched_with(own, args.search)
        except ValueError as e:
            p.error(str(e))
        header["search_overrides"] = args.search
    played, own_trajectories = {}, None
    greedy_rows, greedy_trajectories = play(greedy_policy(agent), agent.seed, args.episodes, agent.env_wrappers())
    played["greedy"] = summarize(greedy_rows)
    for n in sims:
        agent.config.search = dataclasses.replace(own, num_simulations=n) if n else own
        rows, trajectories = play(search_policy(agent) if n else prior_policy(agent), agent.seed, args.episodes,
                                    agent.env_wrappers())
        played[str(n)] = summarize(rows)
        if n == own.num_simulations:
            own_trajectories = trajectories
        print(f"{n if n else 'prior'}: mean return {played[str(n)]['mean_return']}, "
              f"ended by {played[str(n)]['ended_by']}", flush=True)
    agent.config.search = own
    if own_trajectories is None:
        _, own_trajectories = play(search_policy(agent), agent.seed, args.episodes, agent.env_wrappers())
    errors = {"search": model_errors(agent, own_trajectories, horizons),
              "greedy": model_errors(agent, greedy_trajectories, horizons)}
    for name, e in errors.items():
        print(f"model along the {name} episodes: {e['reward_sum_error_by_horizon']}; value: "
              f"{e['value_vs_discounted_return']}", flush=True)
    emit({**header, "played": played, "model_along_episodes": errors, **replay_part}, args.out)


if __name__ == "__main__":
    main()
