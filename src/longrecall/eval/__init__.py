"""Evaluation: answering backends, the NIAH grid (heatmaps, effective length), perplexity, run comparisons.

    longrecall eval niah|ppl|compare|report --help

Each submodule listed in COMMANDS has `add_arguments(parser)` and `main(args)`; the CLI wires them as subcommands.
"""
from __future__ import annotations

from .report import RULER_THRESHOLD, effective_length

# subcommand -> module path (imported lazily so `longrecall --help` does not load torch)
COMMANDS = {
    "niah": "longrecall.eval.grid",
    "ppl": "longrecall.eval.perplexity",
    "compare": "longrecall.eval.compare",
    "report": "longrecall.eval.report",
}

__all__ = ["COMMANDS", "RULER_THRESHOLD", "effective_length"]
