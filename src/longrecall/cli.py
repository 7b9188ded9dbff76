"""The `longrecall` command: one table of subcommands, each a module's `add_arguments(parser)` and `main(args)`.

    longrecall --help
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import signal
import sys
import threading

from .errors import UserError

# (words, module, add-arguments function, main function, help). Modules are imported only when their command runs.
COMMANDS = [
    (("niah", "generate"), "longrecall.niah.cli", "add_arguments", "main", "write needle-in-a-haystack samples to JSONL"),
    (("niah", "families"), "longrecall.niah.cli", None, "families_main", "list the task families"),
    (("niah", "attacks"), "longrecall.niah.cli", "add_attack_arguments", "attacks_main", "audit the reward: answers that dump values, per family"),
    (("serve",), "longrecall.env.server", "add_arguments", "main", "serve a model on an OpenAI-compatible endpoint (transformers serve)"),
    (("env",), "longrecall.env.cli", "add_arguments", "main", "the Atropos environment: serve | process | evaluate"),
    (("data", "sft"), "longrecall.data.sft", "add_arguments", "main", "SFT chat records (direct or through Atropos)"),
    (("data", "dpo"), "longrecall.data.dpo", "add_arguments", "main", "DPO preference pairs with hard negatives"),
    (("data", "pretrain"), "longrecall.data.pretrain", "add_arguments", "main", "long documents packed into N-token blocks"),
    (("data", "reader"), "longrecall.data.reader", "add_arguments", "main", "memory-reader chats: the prompt `memory ask` shows, gold answers"),
    (("data", "lift"), "longrecall.data.lift", "add_arguments", "main", "LIFT segments and auxiliary QA for one long input"),
    (("train", "longlora"), "longrecall.train.recipe", "add_arguments", "main", "LongLoRA: S2-Attn + LoRA + embeddings/norms + position scaling"),
    (("train", "dpo"), "longrecall.train.dpo", "add_arguments", "main", "DPO with the same adapter setup"),
    (("train", "grpo"), "longrecall.rl.grpo", "add_arguments", "main", "GRPO on the NIAH reward (TRL, or consuming Atropos' API)"),
    (("train", "merge"), "longrecall.train.lora_plus", "add_merge_arguments", "merge_main", "merge an adapter into a full model folder"),
    (("eval", "niah"), "longrecall.eval.grid", "add_arguments", "main", "NIAH grid: heatmaps, family scores, effective length"),
    (("eval", "ppl"), "longrecall.eval.perplexity", "add_arguments", "main", "perplexity by length (sliding windows)"),
    (("eval", "scorecard"), "longrecall.eval.scorecard", "add_arguments", "main", "held-out families x lengths with 95%% intervals; --compare two"),
    (("eval", "curve"), "longrecall.eval.curve", "add_arguments", "main", "a budget curve: scorecard score against training minutes, paired"),
    (("eval", "chat"), "longrecall.eval.chat", "add_arguments", "main", "48 ordinary questions, no context: does tuning keep the base's answers?"),
    (("eval", "compare"), "longrecall.eval.compare", "add_arguments", "main", "compare runs side by side"),
    (("eval", "agree"), "longrecall.eval.agree", "add_arguments", "main", "re-ask an Atropos evaluate run in-process and compare"),
    (("eval", "report"), "longrecall.eval.report", "add_arguments", "main", "redraw a grid's heatmaps and report from results.jsonl"),
    (("lift", "ingest"), "longrecall.lift.ingest", "add_arguments", "main", "memorise one long input into an adapter"),
    (("lift", "ask"), "longrecall.lift.ask", "add_arguments", "main", "ask a LIFT adapter a question"),
    (("lift", "eval"), "longrecall.lift.evaluate", "add_arguments", "main", "recall of an ingested input: no context, truncated, base, control"),
    (("lift", "compare"), "longrecall.lift.compare", "add_arguments", "main", "two lift evals of one input, paired by question"),
    (("memory", "add"), "longrecall.memory.api", "add_add_arguments", "add_main", "append text to the long-term memory"),
    (("memory", "ask"), "longrecall.memory.api", "add_ask_arguments", "ask_main", "ask the long-term memory"),
    (("memory", "list"), "longrecall.memory.api", "add_list_arguments", "list_main", "list the memory's documents (complete or interrupted)"),
    (("memory", "forget"), "longrecall.memory.api", "add_forget_arguments", "forget_main", "remove documents from the memory"),
    (("memory", "bench"), "longrecall.memory.bench", "add_arguments", "main",
     "answers of the memory at 1M-10M tokens per family, misses by hop and cause, latency, false answers"),
    (("report",), "longrecall.run_report", "add_arguments", "main", "the pipeline's report for a run folder"),
    (("run",), "longrecall.pipeline", "add_arguments", "main", "the whole pipeline for a preset (demo, cpu, gpu, rl-cpu)"),
]


# What Ctrl-C leaves behind, per command: said plainly, because only some commands resume.
INTERRUPTED = {
    ("memory", "add"): "interrupted: the chunks committed so far are kept, the document marked incomplete; re-run the same "
                       "command to resume it (`longrecall memory list` shows it, `longrecall memory forget ID` removes it)",
    ("eval", "niah"): "interrupted: finished cells are kept in results.jsonl; re-run the same command to resume",
    ("train", "longlora"): "interrupted: re-run the same command to resume from the last checkpoint (save_steps)",
    ("train", "dpo"): "interrupted: re-run the same command to resume from the last checkpoint (save_steps)",
    ("train", "grpo"): "interrupted: re-run the same command to resume from the last checkpoint (save_steps)",
    ("run",): "interrupted: finished stages are kept; re-run the same command to resume at the interrupted stage",
}
START_OVER = "interrupted: no partial file was written; re-running the command starts it over"


def interrupted_message(args) -> str:
    words = tuple(w for w in (getattr(args, "command", None), getattr(args, "subcommand", None)) if w)
    return INTERRUPTED.get(words, START_OVER)


class OneLineParser(argparse.ArgumentParser):
    """Bad flags get one line naming the flag and where help is, not argparse's usage dump."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="longrecall", description="Long-context recall for small LLMs: tasks, data, training, evaluation, memory.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, module, add_fn, main_fn, help_text in COMMANDS:
        if len(words) == 1:
            p = subs.add_parser(words[0], help=help_text, description=help_text)
        else:
            if words[0] not in groups:
                g = subs.add_parser(words[0], help=f"{words[0]} commands", description=f"{words[0]} commands")
                groups[words[0]] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
            p = groups[words[0]].add_parser(words[1], help=help_text, description=help_text)
        p.set_defaults(_target=(module, add_fn, main_fn), _parser=p)
    return parser


def _resolve(parser, argv):
    """Find the chosen command, let its module add its arguments, then parse for real."""
    # Probe without -h so a subcommand's own arguments are added before its help is printed.
    probe, _ = parser.parse_known_args([x for x in argv if x not in ("-h", "--help")])
    target = getattr(probe, "_target", None)
    if target is None:
        return None, parser.parse_args(argv)
    module_name, add_fn, main_fn = target
    module = importlib.import_module(module_name)
    sub = probe._parser
    if add_fn:
        getattr(module, add_fn)(sub)
    args = parser.parse_args(argv)
    return getattr(module, main_fn), args


_NEGATIVE = re.compile(r"^-\d[\d.,%kKmM]*$")


def attach_negative_values(argv: list[str]) -> list[str]:
    """`--depth -10%` as `--depth=-10%`: argparse takes '-10%' for an option and prints its usage; this way the
    value reaches its parser, which says in one line what is wrong with it."""
    out: list[str] = []
    for tok in argv:
        if out and _NEGATIVE.match(tok) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={tok}"
        else:
            out.append(tok)
    return out


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (kill, timeout, a job scheduler) unwinds like Ctrl-C, so finally blocks run: a GRPO run stops the
    # run-api and env servers it launched (killed outright they outlive it and hold port 8010), logs are written.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    argv = attach_negative_values(sys.argv[1:] if argv is None else list(argv))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    parser = build_parser()
    debug = "--debug" in argv
    args = None
    try:
        fn, args = _resolve(parser, argv)
        if fn is None:
            parser.print_help()
            return 0 if not argv else 2
        if getattr(args, "config", None) and hasattr(sys.modules[fn.__module__], "apply_config"):
            sys.modules[fn.__module__].apply_config(args, args._parser)
        fn(args)
        sys.stdout.flush()  # a closed pipe (`| head`) surfaces here, inside the handler below
        return 0
    except UserError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # The reader of our output went away (`longrecall memory ask ... | head`): not an error of ours. Point stdout
        # at /dev/null so the interpreter's final flush is quiet too.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (IsADirectoryError, NotADirectoryError) as e:
        if debug:
            raise
        what = "a folder" if isinstance(e, IsADirectoryError) else "under a file, not a folder"
        print(f"error: {e.filename} is {what}: pass a file path there", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(args), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
