"""Import user code by name: 'package.module:attr' strings from the command line and checkpoints."""
from __future__ import annotations

import importlib
import os
import sys


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


def load_callable(spec: str, what: str = "function"):
    """`load_attr`, refusing an object that cannot be called."""
    obj = load_attr(spec, what)
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
