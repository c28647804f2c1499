"""An environment's state as plain data, so that a resumed run continues the very episodes it
stopped in (and a checkpoint stays data, never code).

`snapshot(env)` walks the wrapper chain down to the unwrapped env and records every attribute whose
value is plain data: None, bools, numbers, strings, numpy arrays and scalars, tuples, lists and
dicts of these, deques of these (a frame stack's queue) and numpy Generators (as their
bit-generator state). `restore(env, state)` sets them
back on an env built the same way. Spaces and the env spec are the same on every copy and are not
recorded. An env that keeps state in anything else (a physics engine, an emulator) has no such
snapshot: `snapshot` returns None, and the caller must start fresh episodes instead.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Dict, List, Optional

import gymnasium as gym
import numpy as np

_GENERATOR = "__generator__"
_DEQUE = "__deque__"
_SKIP = frozenset({"env", "spec", "_cached_spec"})  # the wrapper link and the spec: the same on every copy
_PLAIN = (type(None), bool, int, float, str, np.ndarray, np.generic)


class _NotData(Exception):
    pass


def snapshot(env: gym.Env) -> Optional[List[Dict[str, Any]]]:
    """The state of every layer of `env` (outermost first) as data, or None if some layer keeps
    state that is not plain data."""
    layers = []
    layer = env
    while True:
        try:
            layers.append({k: _data(v) for k, v in vars(layer).items() if k not in _SKIP and not _static(v)})
        except _NotData:
            return None
        if not isinstance(layer, gym.Wrapper):
            return layers
        layer = layer.env


def restore(env: gym.Env, state: List[Dict[str, Any]]) -> None:
    """Set the state `snapshot` recorded back onto `env`, an env built the same way."""
    layer = env
    for i, attributes in enumerate(state):
        for k, v in attributes.items():
            current = getattr(layer, k, None)
            if isinstance(current, np.random.Generator) and isinstance(v, dict) and _GENERATOR in v:
                current.bit_generator.state = v[_GENERATOR]
            else:
                setattr(layer, k, _value(v))
        if i + 1 < len(state):
            if not isinstance(layer, gym.Wrapper):
                raise ValueError("the saved environment state has more wrapper layers than this environment")
            layer = layer.env


def _static(v) -> bool:
    return isinstance(v, (gym.spaces.Space, gym.envs.registration.EnvSpec)) or callable(v)


def _data(v):
    if isinstance(v, np.random.Generator):
        return {_GENERATOR: v.bit_generator.state}
    if isinstance(v, np.ndarray) and v.dtype == object:
        raise _NotData
    if isinstance(v, _PLAIN):
        return v.copy() if isinstance(v, np.ndarray) else v
    if isinstance(v, deque):
        return {_DEQUE: [_data(x) for x in v], "maxlen": v.maxlen}
    if isinstance(v, (list, tuple)):
        items = [_data(x) for x in v]
        return items if isinstance(v, list) else tuple(items)
    if isinstance(v, dict):
        return {k: _data(x) for k, x in v.items()}
    raise _NotData


def _value(v):
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, dict) and _GENERATOR in v:
        g = np.random.default_rng()
        g.bit_generator.state = v[_GENERATOR]
        return g
    if isinstance(v, dict) and _DEQUE in v:
        return deque((_value(x) for x in v[_DEQUE]), maxlen=v["maxlen"])
    return v
