"""`longrecall env serve|process|evaluate [--env.… --openai.…]`: the Atropos environment's own CLI, passed through.

    longrecall serve --port 8000 &
    longrecall env process --config configs/env-smoke.yaml
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["serve", "process", "evaluate"], help="Atropos' subcommands (see `python -m longrecall.env.niah_env ACTION --help`)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="flags for Atropos: --config FILE, --env.FIELD VALUE, --openai.FIELD VALUE")


def main(a) -> None:
    from .niah_env import NiahEnv

    sys.argv = ["longrecall env", a.action, *a.rest]
    try:
        NiahEnv.cli()
    except SystemExit as e:  # Atropos exits on its own; a non-zero code is already explained in its output
        if e.code not in (0, None):
            raise
