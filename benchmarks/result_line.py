"""The last line of every benchmark: one JSON object with the command that wrote it, printed and,
with --out FILE, written to FILE (benchmarks/results/ holds the ones the README quotes)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional


def emit(result: dict, out: Optional[str]) -> str:
    """Add the command line to `result`, print it as one JSON line, write it to `out` if given."""
    line = json.dumps({**result, "command": "python " + " ".join(sys.argv)})
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(line + "\n")
    print(line)
    return line
