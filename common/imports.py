"""Import user code by name: 'package.module:attr' strings from the command line and checkpoints."""
from __future__ import annotations

import ast
import importlib
import os
import sys
from typing import Any, Dict, Tuple


def import_from_cwd() -> None:
    """Put the current directory on sys.path: `python path/to/train.py --value mymod:fn` puts
    train.py's folder there, not the folder the user runs it from, where `mymod.py` usually is."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def import_module(name: str, what: str = "module"):
    """importlib.import_module with the current directory searched too, and a clear error."""
    import_from_cwd()
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ValueError(f"{what} {name!r} could not be imported ({e}); is it installed, on PYTHONPATH "
                         f"or in the current directory?") from e


def load_attr(spec: str, what: str = "object"):
    """Resolve 'package.module:attr' (or 'package.module.attr') to the object it names."""
    mod_name, sep, attr = spec.partition(":")
    if not sep:
        mod_name, _, attr = spec.rpartition(".")
    if not mod_name or not attr:
        raise ValueError(f"{what} {spec!r} must look like 'module:attr'")
    import_from_cwd()
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"{what} {spec!r}: cannot import module {mod_name!r} ({e})") from e
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what} {spec!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def parse_call(spec: str, what: str = "object") -> Tuple[str, Dict[str, Any]]:
    """'module:attr(key=value, ...)' -> ('module:attr', {key: value}); no parentheses: no arguments.

    The arguments are read with `ast` and must be literals: nothing in the string is executed, so
    such a string can be stored in a checkpoint and read back as data."""
    path, paren, rest = spec.partition("(")
    if not paren:
        return spec.strip(), {}
    syntax = (f"{what} {spec!r}: arguments must be literal keyword arguments, "
              f"'module:attr(key=value, ...)'")
    try:
        call = ast.parse("_(" + rest, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"{syntax}; {e.msg}") from None
    if not isinstance(call, ast.Call) or call.args or any(k.arg is None for k in call.keywords):
        raise ValueError(syntax)
    kwargs = {}
    for k in call.keywords:
        try:
            kwargs[k.arg] = ast.literal_eval(k.value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            raise ValueError(f"{syntax}; the value of {k.arg} is not a literal") from None
    return path.strip(), kwargs


def load_callable(spec: str, what: str = "function"):
    """`load_attr`, refusing an object that cannot be called. 'module:factory(key=value, ...)' calls
    the factory with those literal arguments and returns what it builds (e.g. a function with its
    parameters bound: `--value 'mymod:near(x=1.0)'`)."""
    path, kwargs = parse_call(spec, what)
    obj = load_attr(path, what)
    if path != spec.strip():
        if not callable(obj):
            raise ValueError(f"{what} {spec!r}: {path} names a {type(obj).__name__}, not a factory to call")
        try:
            obj = obj(**kwargs)
        except Exception as e:  # noqa: BLE001 -- a user-named factory's failure, reported with its string
            raise ValueError(f"{what} {spec!r} could not be built: {type(e).__name__}: {e}") from e
    if not callable(obj):
        raise ValueError(f"{what} {spec!r} names a {type(obj).__name__}, not a callable")
    return obj


def reference_of(obj):
    """'module:qualname' if importing that gives back `obj` itself (so it can be stored), else None.

    Lambdas and functions defined inside other functions have no such reference: a checkpoint can
    store only their description."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    try:
        return f"{module}:{qualname}" if load_attr(f"{module}:{qualname}") is obj else None
    except ValueError:
        return None
