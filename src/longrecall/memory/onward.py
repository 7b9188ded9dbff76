"""Reading on from an answer: when the reader's answer is a link the evidence goes on from, read again around it.

A small reader shown a whole chain (locker -> room -> building -> city) often stops at a middle link: asked for the
city, it answers the building. Measured at 1M tokens with reader-v1 (docs/results/memory): about a third of the chain
misses with complete evidence were a middle link. The evidence itself says when an answer is a middle link: it is
named by more than one sentence (the one that led to it and the one that goes on). So the reader is asked the same
question again over only the sentences naming its answer, its *neighbourhood*, which holds the next link and little
else to confuse it; this repeats until the answer stays the same, leaves the evidence, or comes back to an earlier
answer (an oscillation: the first answer is kept). An answer named by one sentence is left as it was: single facts,
non-literal needles and a chain's real end cost no extra read.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

from ..rag.multihop import _has_word

LEAD = re.compile(r"^(?:it is|it's|it was|the answer is|answer:)\s+", re.I)
MAX_STEPS = 4  # a chain of the mission has at most 4 hops


def core(answer: str | None) -> str:
    """The named thing of an answer: "It is room L463." -> "room L463"."""
    return LEAD.sub("", (answer or "").strip()).strip().rstrip(".").strip()


def names(text: str, thing: str) -> bool:
    return bool(thing) and _has_word(text.lower(), thing)


def read_on(question: str, sentences: Sequence[str], answer: str | None, read: Callable[[str, Sequence[str]], str | None],
            max_steps: int = MAX_STEPS) -> tuple[str | None, list[str]]:
    """(the answer to give, the answers read on to after the first). read(question, sentences) is one reading."""
    first, seen, path = answer, [core(answer).lower()], []
    for _ in range(max_steps):
        near = [s for s in sentences if names(s, core(answer))]
        if len(near) < 2 or len(near) == len(sentences):
            break  # named once: nothing goes on from it; named everywhere: the same reading again
        new = read(question, near)
        thing = core(new).lower()
        if not thing or thing == seen[-1] or not any(names(s, thing) for s in sentences):
            break  # the same answer, or one the evidence does not hold
        if thing in seen:
            return first, []  # back to an earlier answer: the reading oscillates, keep the first
        answer, path = new, path + [new]
        seen.append(thing)
    return answer, path
