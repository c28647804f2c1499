"""Command-line flags that run a checkpoint on another environment, shared by `eval`, `audit` and
`explain` (and anything else that evaluates a loaded agent, e.g. a transfer suite):

    --env ID              a gymnasium id (default: the checkpoint's own)
    --env-kwargs JSON     keyword arguments for gymnasium.make, a JSON object: '{"split": "test"}'
    --wrapper MOD:CLASS   a wrapper applied AFTER the checkpoint's own wrappers; repeatable, literal
                          arguments in the string as for `train.py --wrapper`
    --replace-wrappers    apply only the --wrapper list, not the checkpoint's own wrappers
    --env-module PKG      import PKG first (it registers more env ids)

The checkpoint's wrappers stay by default because they define the spaces the model was trained on
(a DiscretizeAction, a FlattenObservation); a --wrapper adds to them (a reward wrapper, a shift).
A planner with an observation history (AgentConfig.observation_history) stacks the result, after
every wrapper: its model reads stacks whichever env it runs on (Agent.env_wrappers).

`resolve_env(agent, args)` returns the environment to run as (env_id, wrappers, env_kwargs) and
refuses, before any episode runs, an environment whose observation or action space differs from the
checkpoint's: a Box observation must have the same shape and dtype (its bounds may differ: a
shifted environment), a Discrete action space the same number of actions.
"""
from __future__ import annotations

import argparse
import json
from typing import List, NamedTuple, Optional

import gymnasium as gym

import envs
from envs.make import parse_wrapper


class EnvChoice(NamedTuple):
    """The environment a command runs a checkpoint on: `envs.make(env_id, wrappers=wrappers, **env_kwargs)`."""
    env_id: str
    wrappers: List[str]
    env_kwargs: dict

    def report(self, agent) -> dict:
        """JSON fields naming the environment used (and the one the checkpoint was trained on)."""
        return {"env_id": self.env_id, "env_kwargs": dict(self.env_kwargs), "wrappers": list(self.wrappers),
                "checkpoint_env_id": agent.env_id}

    def label(self, agent) -> str:
        """One line: the id, its kwargs, and the wrappers when they are not the checkpoint's own."""
        text = self.env_id
        if self.env_kwargs:
            text += " " + json.dumps(self.env_kwargs)
        if list(self.wrappers) != agent.env_wrappers():
            text += " with wrappers [" + ", ".join(self.wrappers) + "]"
        if self.env_id != agent.env_id:
            text += f" (checkpoint trained on {agent.env_id})"
        return text


def add_env_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "environment", "run the checkpoint on another environment with the same observation and action\n"
                       "spaces (a shifted test environment, a reward wrapper)")
    g.add_argument("--env", metavar="ID", help="gymnasium id to run on (default: the checkpoint's own)")
    g.add_argument("--env-kwargs", metavar="JSON",
                   help="keyword arguments for the environment, a JSON object, e.g. '{\"split\": \"test\"}' "
                        "(default: none)")
    g.add_argument("--wrapper", dest="env_wrappers", action="append", default=[], metavar="MODULE:CLASS",
                   help="gymnasium wrapper applied after the checkpoint's own wrappers (they define the spaces "
                        "the model was trained on), in order; repeatable. Arguments as literals: "
                        "'mymod:ScaleReward(scale=2.0)'")
    g.add_argument("--replace-wrappers", action="store_true",
                   help="apply only the --wrapper list, not the checkpoint's own wrappers")
    g.add_argument("--env-module", metavar="PKG", help="import PKG first (it registers more env ids)")


def parse_env_kwargs(text: Optional[str]) -> dict:
    """--env-kwargs JSON -> dict ({} when not given); anything but a JSON object is refused."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--env-kwargs must be a JSON object, e.g. '{{\"split\": \"test\"}}', got {text!r} "
                         f"({e})") from e
    if not isinstance(value, dict):
        raise ValueError(f"--env-kwargs must be a JSON object, e.g. '{{\"split\": \"test\"}}', got {text!r} "
                         f"(a {type(value).__name__})")
    return value


def check_env_arguments(args: argparse.Namespace) -> None:
    """Refuse a malformed --env-kwargs or --wrapper string before a checkpoint is loaded."""
    parse_env_kwargs(getattr(args, "env_kwargs", None))
    for spec in getattr(args, "env_wrappers", None) or ():
        parse_wrapper(spec)


def asks_for_env_change(args: argparse.Namespace) -> bool:
    """Whether any environment flag was given (else the checkpoint's own environment is used)."""
    return bool(getattr(args, "env", None) or getattr(args, "env_kwargs", None) is not None
                or getattr(args, "env_wrappers", None) or getattr(args, "replace_wrappers", False))


def resolve_env(agent, args: argparse.Namespace) -> EnvChoice:
    """The environment the flags ask for, checked against the checkpoint's spaces before any episode.

    Without --env the checkpoint's env id; without --env-kwargs none; wrappers: the checkpoint's own
    then the --wrapper list (only the --wrapper list with --replace-wrappers). A mismatched
    observation or action space is a ValueError naming the flags, both spaces and the fix."""
    check_env_arguments(args)
    if getattr(args, "env_module", None):
        envs.import_env_module(args.env_module)
    extra = list(getattr(args, "env_wrappers", None) or ())
    choice = EnvChoice(env_id=getattr(args, "env", None) or agent.env_id,
                       wrappers=agent.env_wrappers(extra if getattr(args, "replace_wrappers", False)
                                                   else [*agent.wrappers, *extra]),
                       env_kwargs=parse_env_kwargs(getattr(args, "env_kwargs", None)))
    if not asks_for_env_change(args):
        return choice
    flags = _flags_given(args, choice)
    target = _make(choice, flags)
    own = agent.env_wrappers()
    trained = envs.make(agent.env_id, None, wrappers=own, env_module=agent.env_module, check=False)
    try:
        differ = [what for what, t, c in (("observation", target.observation_space, trained.observation_space),
                                          ("action", target.action_space, trained.action_space))
                  if not same_space(t, c)]
        if differ:
            wrapped = f" with wrappers [{', '.join(own)}]" if own else ""
            raise ValueError(
                f"{flags}: {choice.env_id} has observation space {_show(target.observation_space)} and action "
                f"space {_show(target.action_space)}, but the checkpoint was trained on {agent.env_id}{wrapped} "
                f"with observation space {_show(trained.observation_space)} and action space "
                f"{_show(trained.action_space)}: the {' and '.join(differ)} spaces differ. The model only runs "
                f"on the spaces it was trained on: the same observation shape and dtype (a Box's bounds may "
                f"differ: a shifted environment) and the same action space. Pick an environment with these "
                f"spaces, or add a --wrapper that maps this one onto them.")
    finally:
        target.close()
        trained.close()
    return choice


def same_space(a: gym.Space, b: gym.Space) -> bool:
    """Whether a model trained on space `b` can take `a`: Boxes by shape and dtype (not bounds),
    Discrete by the number of values (and start), anything else by equality."""
    if isinstance(a, gym.spaces.Box) and isinstance(b, gym.spaces.Box):
        return a.shape == b.shape and a.dtype == b.dtype
    if isinstance(a, gym.spaces.Discrete) and isinstance(b, gym.spaces.Discrete):
        return int(a.n) == int(b.n) and int(a.start) == int(b.start)
    return a == b


def _show(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Box):
        return f"Box(shape={space.shape}, dtype={space.dtype})"
    return str(space)


def _flags_given(args: argparse.Namespace, choice: EnvChoice) -> str:
    parts = [f"--env {choice.env_id}"] if getattr(args, "env", None) else []
    if getattr(args, "env_kwargs", None) is not None:
        parts.append(f"--env-kwargs '{args.env_kwargs}'")
    for spec in getattr(args, "env_wrappers", None) or ():
        parts.append(f"--wrapper '{spec}'")
    if getattr(args, "replace_wrappers", False):
        parts.append("--replace-wrappers")
    return " ".join(parts)


def _make(choice: EnvChoice, flags: str) -> gym.Env:
    """Build the environment once (checks the id, the kwargs and the wrappers), naming the flags on failure."""
    try:
        return envs.make(choice.env_id, None, wrappers=choice.wrappers, check=False, **choice.env_kwargs)
    except ValueError as e:  # an unknown id or a wrapper that cannot be built: the message names the fix
        raise ValueError(f"{flags}: {e}") from e
    except Exception as e:  # noqa: BLE001 -- e.g. a keyword the environment does not take
        raise ValueError(f"{flags}: {choice.env_id} could not be made ({type(e).__name__}: {e}); check "
                         f"--env-kwargs against its constructor") from e
