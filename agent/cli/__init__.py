"""`train.py` subcommands. Each lives in its own module with `add_arguments(parser)` and `run(args)`."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

COMMANDS = {
    "train": ("agent.cli.train", "train an agent (the default when no command is given)"),
    "eval": ("agent.cli.evaluate", "evaluate a checkpoint on the shared evaluation protocol"),
    "compare": ("agent.cli.compare", "train several algorithms x seeds and summarize them"),
    "explain": ("agent.cli.explain", "show what the search considered at one observation"),
    "audit": ("agent.cli.audit", "measure how much of the competence comes from the search"),
    "misgen": ("agent.cli.misgen", "goal-misgeneralization report on a train/test testbed"),
    "transfer": ("agent.cli.transfer", "score swapped objectives against agents trained on them"),
    "refit": ("agent.cli.refit", "fit a value for a new reward from a run's replay, no env steps"),
}


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        cmd, argv = argv[0], argv[1:]
    else:
        cmd = "train"
    module = importlib.import_module(COMMANDS[cmd][0])
    epilog = "commands:\n" + "\n".join(f"  {k:<8} {v[1]}" for k, v in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="train.py" if cmd == "train" else f"train.py {cmd}", description=COMMANDS[cmd][1],
        epilog=epilog if cmd == "train" else None, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: more threads slow small networks down)")
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(max(1, args.threads))
    from agent.distributed import RayNotInstalled
    from agent.runner import TrainingInterrupted
    try:
        return int(module.run(args) or 0)
    except TrainingInterrupted as e:
        print(f"stopped: {e}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RayNotInstalled) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
