"""The entity router: open a LIFT adapter only for questions that name something the ingested input names.

Measured (docs/results/lift16k): the learned gate opens as much on ordinary chats and on questions about other texts
as on memory questions, so an adapter answers everything from memory: in-context questions about other texts lose
35 points, ordinary chats change, and keys never ingested get a memorised value 85% of the time. Telling "a key
the input holds" from "a key it does not" is membership, which a per-token gate on the query cannot learn from one
input. The router decides it outside the model, from the question's *entities*: names (capitalised words that do
not open a sentence), identifiers (letters mixed with digits, hyphens or underscores: `amber-falcon`, `K41`,
`run_7`) and long numbers (4+ digits). If one of them occurs in the ingested input, the adapter answers; otherwise
the gate is shut and the base model answers, exactly as it would without the adapter.

What it cannot do: a question that names nothing (`What did the narrator eat?`) is sent to the base model even when
the input holds its answer, and a question naming an entity the input holds sends every question about that entity
to memory, answerable or not. The input's word types are stored at ingest (`vocabulary.json`: the set of lowercased
words, not the text).
"""
from __future__ import annotations

import re
from typing import Iterable

VOCABULARY = "vocabulary.json"
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_'’-]*[A-Za-z0-9]|[A-Za-z0-9]")
_IDENT = re.compile(r"(?=.*[A-Za-z])(?=.*[\d_-])")
_SENTENCE_END = re.compile(r"[.!?:;\"“”]\s*$")


def vocabulary(text: str) -> set[str]:
    """Every word form of `text`, lowercased (a hyphenated key is one word, and its parts are words too)."""
    out = set()
    for w in _WORD.findall(text):
        w = w.lower()
        out.add(w)
        out.update(p for p in re.split(r"[-_'’]", w) if p)
    return out


def entities(question: str) -> list[str]:
    """The question's names, identifiers and long numbers, lowercased, in order."""
    out = []
    for m in _WORD.finditer(question):
        w = m.group()
        before = question[: m.start()]
        opens_sentence = not before.strip() or bool(_SENTENCE_END.search(before))
        name = w[0].isupper() and not opens_sentence and not w.isupper() or (w.isupper() and len(w) > 1 and w.isalpha())
        ident = bool(_IDENT.match(re.sub(r"['’]s$", "", w)))
        number = w.isdigit() and len(w) >= 4
        key = re.sub(r"['’]s$", "", w.lower())
        if (name or ident or number) and key not in out:
            out.append(key)
    return out


def route(question: str, vocab: Iterable[str] | set[str]) -> tuple[bool, list[str]]:
    """(open the adapter?, the question's entities the input holds)."""
    vocab = vocab if isinstance(vocab, set) else set(vocab)
    held = [e for e in entities(question) if e in vocab]
    return bool(held), held
