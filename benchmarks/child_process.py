"""A benchmark's child process (one seed, one mode), stopped with the benchmark."""
from __future__ import annotations

import signal
import subprocess


def run_child(cmd, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, check=True, text=True, **kwargs)`, where a SIGTERM to this process stops
    the child too. subprocess.run kills its child on any exception raised while it waits, and
    Python's default SIGTERM ends the parent without one, leaving the child to run on beside the
    next measurement; the handler turns the signal into an exception."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    return subprocess.run(cmd, check=True, text=True, **kwargs)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}")
