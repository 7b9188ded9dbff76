"""Who answers a `memory ask`, and the evidence shown with the answer.

    longrecall memory ask "Which room holds Kofi's bicycle?"                      # reader: the shipped reader-v1
    longrecall memory ask "..." --reader runs/cpu/train/adapter --json           # an adapter (or a merged folder)

The reader is `--reader`, else $LONGRECALL_READER, else reader-v1, the shipped memory reader (a LoRA on the embedded
model trained on the prompts the memory shows its reader; `--reader base` is the embedded model alone); the output
always names it.
Evidence: each retrieved piece with its document, character offsets and text; for a multi-hop question, the
hop-by-hop trace (which entities were followed, and which pieces each hop reached).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import UserError

BASE = "base"
SHIPPED = "reader-v1"  # the default: a LoRA reader trained on memory-ask prompts (memory/readers/reader-v1/README.md)
READERS = Path(__file__).parent / "readers"  # every shipped reader, by name (reader-v2: better on non-literal questions, worse on chains)
SHIPPED_DIR = READERS / SHIPPED


def shipped(spec: str) -> bool:
    """A shipped reader's name (reader-v1, reader-v2), not a path."""
    return spec.startswith("reader-") and "/" not in spec and (READERS / spec / "adapter_config.json").exists()


def reader_spec(arg: str | None) -> str:
    """The reader to use: the flag, else $LONGRECALL_READER, else the shipped default reader."""
    return arg or os.environ.get("LONGRECALL_READER") or SHIPPED


def describe(spec: str) -> str:
    if spec in (BASE, "default"):
        return "base (embedded SmolLM2-135M-Instruct)"
    if spec == SHIPPED:
        return f"{SHIPPED} (the shipped memory reader: a LoRA on SmolLM2-135M-Instruct)"
    if shipped(spec):
        return f"{spec} (another shipped memory reader: a LoRA on SmolLM2-135M-Instruct)"
    kind = "adapter" if (Path(spec) / "adapter_config.json").exists() else "model"
    return f"{kind} {spec}"


def load_reader(spec: str, max_new_tokens: int = 64):
    """A prompt -> answer callable for the reader spec: base, an adapter folder, or a model folder."""
    from .api import default_generator

    if spec in (BASE, "default"):
        return default_generator("default", max_new_tokens)
    if shipped(spec):
        return default_generator("default", max_new_tokens, adapter=str(READERS / spec))
    folder = Path(spec)
    if (folder / "adapter_config.json").exists():
        from ..train.lora_plus import read_adapter_info

        base = read_adapter_info(folder).get("base_model", "default")
        return default_generator(base, max_new_tokens, adapter=str(folder))
    if (folder / "config.json").exists():
        return default_generator(str(folder), max_new_tokens)
    raise UserError(f"--reader {spec}: not 'base', an adapter folder (adapter_config.json) or a model folder (config.json)")


def evidence(answer, sources: dict[int, str | None]) -> list[dict]:
    """The retrieved pieces in document order, each with its source, offsets and the hop that reached it."""
    hop_of: dict = {}
    for step in answer.trace:
        for key in step["chunks"]:
            hop_of.setdefault(tuple(key), step["hop"])
    return [{"doc_id": c.doc_id, "source": sources.get(c.doc_id), "start": c.start, "end": c.end,
             "hop": hop_of.get(c.key), "text": c.text} for c in answer.chunks]


def trace_lines(answer, items: list[dict]) -> list[str]:
    """'hop 1 via Kofi: notes.txt@1204' lines for the hops that reached a piece the answer was given."""
    lines = []
    for step in answer.trace:
        reached = [f"{e['source'] or e['doc_id']}@{e['start']}" for e in items if e["hop"] == step["hop"]]
        if not reached:
            continue
        via = "the question" if not step["via"] else ", ".join(step["via"])
        lines.append(f"  hop {step['hop']} via {via}: {', '.join(reached)}")
    return lines


def render(answer, items: list[dict], reader: str | None, width: int = 160) -> str:
    """The answer (or the retrieved text), then its evidence, as the terminal shows it."""
    head = answer.answer if answer.answer is not None else answer.context
    read_as = [f"read as: {' -> '.join(answer.walk)}"] if len(answer.walk) > 1 else []
    read_as += [f"read on: {' -> '.join(answer.onward)}"] if answer.onward else []
    chosen = f", the closest in meaning of {answer.chosen_from}" if answer.chosen_from else ""
    out = [head, *read_as, "", f"evidence ({len(items)} pieces{chosen}, strategy {answer.strategy}"
           + (f", reader {reader})" if reader else ", no reader)") + ":"]
    for e in items:
        text = " ".join(e["text"].split())
        text = text if len(text) <= width else text[: width - 1] + "…"
        out.append(f"  [{e['source'] or 'doc ' + str(e['doc_id'])} @ {e['start']}-{e['end']}] {text}")
    hops = trace_lines(answer, items)
    if len(hops) > 1:
        out += ["trace:"] + hops
    return "\n".join(out)


def as_json(answer, items: list[dict], reader: str | None) -> str:
    return json.dumps({"question": answer.question, "answer": answer.answer, "reader": reader, "strategy": answer.strategy,
                       "walk": answer.walk, "onward": answer.onward, "chosen_from": answer.chosen_from, "evidence": items, "trace": [{**t, "chunks": [list(k) for k in t["chunks"]]} for t in answer.trace],
                       "warning": answer.warning()}, ensure_ascii=False, indent=1)
