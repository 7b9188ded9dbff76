"""What the reader is shown: the retrieved chunks cut down to the sentences that bear on the question.

A retrieved chunk is ~600 characters of which the fact is one sentence; six of them around a small reader bury the
fact in unrelated text (measured: SmolLM2-135M, base or tuned, read almost nothing right from 6,000 characters of
whole chunks at 1M tokens although retrieval had found every needle). Kept: the sentences that name one of the
question's marks (see `marks`) or an entity the multi-hop trace followed. Sentences keep their document offsets, so
the evidence shown is exactly what the reader read.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable, Sequence

from ..rag.chunking import Chunk, sentence_spans
from ..rag.multihop import _has_word, key_phrases
from ..rag.retrievers import STOPWORDS

# Words that open a question or a request, not names ("According to the notes, ...", "Quick question: ...").
OPENERS = frozenset(
    "give tell find list name what which who whom whose where when why how look enumerate write go please return state "
    "say report provide identify locate recall search read extract someone somebody anyone everyone check show "
    "according based using reading looking considering given regarding about quick one from in on as per now so then "
    "also and but next first again retrieve collect fetch count gather let can could would should do does did is are "
    "was were has have had just only".split())


def sentences(chunk: Chunk) -> list[Chunk]:
    return [replace(chunk, text=chunk.text[s:e], start=chunk.start + s, end=chunk.start + e) for s, e in sentence_spans(chunk.text)]


def marks(question: str, count: Callable[[str], int]) -> list[str]:
    """What a relevant sentence names: the question's named keys (brave-otter, E885, Hugo) that the memory holds,
    else its runs of two or more content words that it holds ("hidden number"). Single question words are no mark:
    a template word ("give", "wanted") can be as rare in the memory as a key."""
    ents, runs = key_phrases(question)
    keys = [e for e in dict.fromkeys(ents) if e.lower() not in OPENERS and count(e) > 0]
    if not keys:  # a name opening the question ("Amara needs the pram back") is a key too, when the memory holds it
        keys = [n for n in names(question)[:1] if " " not in n and count(n) > 0]
    if not keys:
        keys = [p for p in dict.fromkeys(" ".join(r) for r in runs if len(r) >= 2) if count(p) > 0]
    return keys


def names(question: str) -> list[str]:
    """The named things of a question, adjacent names joined ("Port Hollis", "brave-otter", "E885", "Kofi")."""
    ents = [e for e in key_phrases(question)[0] if e.lower() not in OPENERS]
    first = re.match(r"\s*([A-Z][a-z]+)(?:'s)?\b", question)
    if first and first.group(1).lower() not in STOPWORDS | OPENERS and first.group(1) not in ents:
        ents.insert(0, first.group(1))
    out: list[str] = []
    for e in ents:
        if out and re.search(re.escape(out[-1]) + r"(?:'s)?\s+" + re.escape(e), question):
            out[-1] = f"{out[-1]} {e}"
        else:
            out.append(e)
    return out


def holds_none(question: str, count: Callable[[str], int]) -> list[str]:
    """The question's named things when the memory holds none of them (then it cannot hold the answer), else []."""
    named = names(question)
    return named if named and all(count(n) == 0 for n in named) else []


def focus(question: str, chunks: Sequence[Chunk], count: Callable[[str], int], trace: Sequence[dict] = (),
          order: str = "document") -> list[Chunk]:
    """The sentences of `chunks` connected to the question: those naming one of its marks, then, hop by hop, those
    naming an entity the multi-hop trace followed *and* a kept sentence names (a chain's next link; an entity reached
    from unrelated text is not followed). order "document": document order; "hops": the order the links were reached
    (the question's own sentences first, a chain's last link last). [] when nothing names a mark."""
    sents = [(x, x.text.lower()) for c in chunks for x in sentences(c)]
    found = {m.lower() for m in marks(question, count)}
    followed = {e.lower() for hop in trace for e in hop.get("via", [])}
    kept: dict[tuple, Chunk] = {}
    while True:
        new = [(x, low) for x, low in sents if (x.doc_id, x.start) not in kept and any(_has_word(low, m) for m in found)]
        if not new:
            break
        for x, _ in new:
            kept[(x.doc_id, x.start)] = x
        links = {e for e in followed - found if any(_has_word(low, e) for _, low in new)}
        if not links:
            break
        found |= links
    return list(kept.values()) if order == "hops" else sorted(kept.values(), key=lambda c: (c.doc_id, c.start))
