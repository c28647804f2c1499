"""User functions plugged into an objective: loading them, calling them batched, checking them once.

A plugged function sees a batch — predicted observations `[B, *obs_shape]` (from `model.decode`) or
latents `[B, *latent_shape]` — and returns one float per row, shape `[B]` (`[B, 1]` is accepted).

Torch or numpy? The function is first called with a torch tensor. If that raises, or it returns a
numpy array, it is called with a numpy float32 array from then on (the mode is remembered), and its
result is converted back to a torch tensor on the model's device. Pass `numpy=True/False` to fix
the mode instead of detecting it. So `lambda obs: obs[:, 0]` and `lambda obs: np.abs(obs[:, 0])`
both work as written.

Root observations. Where the objective allows it (`root=True`: the functions over predicted
observations of ObservationValue, ObservationReward and Penalized), a function whose signature has
a second positional parameter without a default, `fn(obs, root_obs)`, also gets the real
observations at the roots of the trees, `root_obs [B, ...]` (float32, torch or numpy as `obs`):
row b of every batch the search evaluates belongs to tree b, whose root shows root_obs[b]. The
arity is read once, with `inspect.signature`. `observe(root_obs)` sets them before each search
(the policies call the objective's `observe`); a batch of another size (the one-time validation's
dummy batch) gets the predicted observations themselves as root_obs. So a value can read a goal or
a target from what the agent actually sees, e.g. `lambda obs, root_obs: -abs(obs[:, 0] -
root_obs[:, 2])`.

The first call checks the output strictly — shape, float dtype, finite values, no exception — and
raises a `ValueError` that names the function and says what it returned. `planners.objectives.
validate` makes that first call at plug-in time on a dummy batch, so a broken function fails when
it is plugged in rather than deep inside a search. Every later call is checked cheaply — that it
raised nothing and returned shape [B] or [B, 1] — and fails with the same kind of ValueError.
"""
from __future__ import annotations

import inspect
from typing import Callable, Optional, Union

import numpy as np
import torch

from common.imports import load_callable, reference_of


def describe_callable(fn) -> str:
    ref = reference_of(fn)
    if ref:
        return ref
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    module = getattr(fn, "__module__", None)
    return f"{name} (from {module}, not importable)" if module else name


def takes_root(fn) -> bool:
    """Whether `fn` has a second positional parameter without a default (fn(obs, root_obs)).

    One with a default is an option of the function's own (numpy's ufuncs have `out=None` there),
    and a callable without a readable signature is taken to have one parameter."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                and p.default is p.empty]
    return len(required) >= 2


class PluggedFn:
    """A user function over a batch, made safe to call from the search (see the module docstring).
    `root`: the function may take the roots' real observations as a second argument."""

    def __init__(self, fn: Union[Callable, str], what: str = "function", numpy: Optional[bool] = None,
                 root: bool = False):
        self.ref = fn if isinstance(fn, str) else reference_of(fn)
        self.fn = load_callable(fn, what) if isinstance(fn, str) else fn
        if not callable(self.fn):
            raise ValueError(f"{what} must be callable or a 'module:attr' string, got {type(fn).__name__}")
        self.what = what
        self.name = self.ref or describe_callable(self.fn)
        self.numpy = numpy  # None: not yet known, decided on the first call
        self.checked = False
        self.with_root = bool(root) and takes_root(self.fn)  # read once: fn(obs, root_obs)
        self.root: Optional[torch.Tensor] = None

    def observe(self, root_obs) -> None:
        """The real observations at the B roots (row b: tree b), kept for a function that takes them."""
        if self.with_root:
            self.root = torch.as_tensor(root_obs.detach().cpu() if isinstance(root_obs, torch.Tensor)
                                        else np.asarray(root_obs), dtype=torch.float32)

    def _args(self, x: torch.Tensor) -> tuple:
        """What the function is called with for the batch x: x, and the root observations when it
        takes them (x itself for a batch of another size than the roots')."""
        numpy = self.numpy
        if not self.with_root:
            return (_to_numpy(x) if numpy else x,)
        root = self.root
        if root is None or root.shape[0] != x.shape[0]:
            root = x
        elif root.device != x.device:
            root = self.root = root.to(x.device)  # moved once per search, not once per call
        return (_to_numpy(x), _to_numpy(root)) if numpy else (x, root)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.checked:
            return self.check(x)
        try:
            out = self.fn(*self._args(x))
        except Exception as e:  # noqa: BLE001 -- any failure of user code, reported with what it was given
            raise ValueError(f"{self.what} {self.name} raised {type(e).__name__}: {e} when called on "
                             f"{self._kind()} of shape {tuple(x.shape)}{self._with_root()} (it passed its "
                             f"first check)") from e
        # Every later call is shape-checked too (cheap: no host sync), so that a function that
        # changes its output mid-search fails with its name, not as a broadcasting error deep inside.
        shape = tuple(getattr(out, "shape", ()))
        if shape not in ((x.shape[0],), (x.shape[0], 1)):
            raise ValueError(f"{self.what} {self.name} must return one value per row, shape [{x.shape[0]}], "
                             f"but called on {self._kind()} of shape {tuple(x.shape)} it returned "
                             f"{type(out).__name__} of shape {shape} (it passed its first check): {_show(out)}")
        return _to_torch(out, x).reshape(x.shape[0])

    def _kind(self) -> str:
        return "a numpy float32 array" if self.numpy else "a torch tensor"

    def _with_root(self) -> str:
        return " and the root observations" if self.with_root else ""

    def check(self, x: torch.Tensor) -> torch.Tensor:
        """Call once with every check on; remember the torch/numpy mode that worked."""
        out = self._first_call(x)
        self._check_output(out, x.shape[0])
        self.checked = True
        return _to_torch(out, x).reshape(x.shape[0])

    def _first_call(self, x: torch.Tensor):
        if self.numpy is None:
            self.numpy = False
            try:
                out = self.fn(*self._args(x))
            except Exception:  # noqa: BLE001 -- a numpy-only function; retried below with numpy
                self.numpy = True
            else:
                self.numpy = isinstance(out, np.ndarray)
                if not self.numpy:
                    return out
        try:
            return self.fn(*self._args(x))
        except Exception as e:
            raise ValueError(f"{self.what} {self.name} raised {type(e).__name__}: {e} when called on "
                             f"{self._kind()} of shape {tuple(x.shape)}{self._with_root()}") from e

    def _check_output(self, out, batch: int) -> None:
        def fail(problem: str):
            raise ValueError(f"{self.what} {self.name} must return a float array of shape [{batch}] "
                             f"(one value per row of the batch), but {problem}: {_show(out)}")

        if not isinstance(out, (torch.Tensor, np.ndarray)):
            fail(f"it returned a {type(out).__name__}")
        if tuple(out.shape) not in ((batch,), (batch, 1)):
            fail(f"it returned shape {tuple(out.shape)}")
        is_float = out.is_floating_point() if isinstance(out, torch.Tensor) else np.issubdtype(out.dtype, np.floating)
        if not is_float:
            fail(f"its dtype is {out.dtype}, not a float type")
        finite = torch.isfinite(out).all().item() if isinstance(out, torch.Tensor) else np.isfinite(out).all()
        if not finite:
            fail("it contains NaN or inf")


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy()


def _to_torch(out, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(out, dtype=torch.float32, device=like.device)


def _show(out) -> str:
    text = repr(out)
    return text if len(text) <= 200 else text[:200] + "..."


def validate(objective, model, obs_shape, batch: int = 4) -> None:
    """Run `objective` once on a dummy batch so a broken plug-in fails now, with a clear error.

    The batch is `batch` all-zero observations of `obs_shape`, their latents, and one model step
    (actions 0, 1, ...). Every plugged function is checked strictly on it (see PluggedFn.check),
    including a missing decoder or value ensemble; then the objective's own outputs (edge reward,
    leaf and terminal values) must be finite float tensors of shape [batch]. Called by
    `EZAgent.set_objective`.
    """
    for fn in _plugged(objective):
        fn.checked = False  # re-check against this model, even if it was checked on another one
    device = _device_of(model)
    with torch.no_grad():
        obs = torch.zeros((batch, *tuple(obs_shape)), dtype=torch.float32, device=device)
        root = model.initial_inference(obs)
        actions = torch.arange(batch, device=device) % root.policy_logits.shape[-1]
        child = model.recurrent_inference(root.latent, actions)
        results = {"edge_reward": objective.edge_reward(model, root.latent, actions, child),
                   "leaf_value": objective.leaf_value(model, child),
                   "terminal_value": objective.terminal_value(model, child),
                   "leaf_value at the root": objective.leaf_value(model, root)}
    for what, out in results.items():
        ok = (isinstance(out, torch.Tensor) and tuple(out.shape) == (batch,) and out.is_floating_point()
              and bool(torch.isfinite(out).all()))
        if not ok:
            raise ValueError(f"objective {objective.describe()} returned an invalid {what} on a dummy "
                             f"batch (expected a finite float tensor of shape [{batch}]): {_show(out)}")


def _plugged(objective):
    """Every PluggedFn inside `objective`, including inside composed base objectives."""
    for v in vars(objective).values():
        if isinstance(v, PluggedFn):
            yield v
        elif hasattr(v, "edge_reward") and hasattr(v, "leaf_value"):
            yield from _plugged(v)


def _device_of(model) -> torch.device:
    if getattr(model, "device", None) is not None:
        return torch.device(model.device)
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")
