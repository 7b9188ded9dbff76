"""Every-X questions read a few evidence sentences at a time, and the answers merged.

Find-all retrieval hands the reader 8-64 sentences, one needle each. Asked to list every value in one go, a 135M
reader stops early or runs on past the last value (measured, docs/results/memory: with the evidence complete,
reading lost 36 of 50 every-X questions at 1M). Asked the same question over a few sentences at a time, it reads each
piece as it reads a single-needle question, which it gets right ~95% of the time. The pieces keep document order;
a piece the reader says holds nothing is dropped; repeated values are listed once.
"""
from __future__ import annotations

import inspect
import re
from typing import Callable, Sequence

from ..rag.chunking import Chunk

GROUP = 4  # sentences per read (memory bench --read-group measures the choice)
TOKENS_PER_SENTENCE = 16  # answer budget per sentence of a piece: a value or two, not a run-on

# A reader that says the notes do not hold the answer.
ABSTAIN = re.compile(
    r"\b(not (in|mentioned|stated|given|found|specified|provided|listed|included)|no (information|mention|record)|"
    r"do(es)? ?n[o']t (say|mention|contain|specify|state|know)|cannot (find|determine|answer|say)|"
    r"can't (find|determine|answer|say)|unknown|not sure|none)\b", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•]\s*|\d{1,2}[.)]\s+)")
_OPENER = re.compile(r"^(?:it is|they are|the \w+(?: \w+)? (?:is|are)|answer:)\s*", re.IGNORECASE)


def abstains(answer: str | None) -> bool:
    return answer is None or not answer.strip() or bool(ABSTAIN.search(answer))


def items(answer: str) -> list[str]:
    """The listed things of one answer: split at commas, semicolons, new lines and a final 'and', bullets and an
    opening 'It is' removed."""
    out = []
    for part in re.split(r"[,;\n]|\band\b", answer):
        part = _OPENER.sub("", _BULLET.sub("", part)).strip(" .")
        if part:
            out.append(part)
    return out


def merge(answers: Sequence[str]) -> str:
    """One list from the pieces' answers, first mention first, each thing once; what says "not in the notes" is
    dropped ("" when nothing is left)."""
    seen: dict[str, str] = {}
    for a in answers:
        for it in items(a):
            if not abstains(it):
                seen.setdefault(it.lower(), it)
    return ", ".join(seen.values())


def takes_cap(generate: Callable) -> bool:
    try:
        return "cap" in inspect.signature(generate).parameters
    except (TypeError, ValueError):
        return False


def read_in_pieces(question: str, chunks: Sequence[Chunk], generate: Callable, prompt: Callable[[str, Sequence[Chunk]], str],
                   group: int = GROUP) -> str:
    """Ask `question` over `group` evidence sentences at a time; the merged answers, or the last abstention when
    no piece holds anything."""
    capped, answers = takes_cap(generate), []
    for i in range(0, len(chunks), group):
        part = chunks[i : i + group]
        text = prompt(question, part)
        answers.append(generate(text, cap=TOKENS_PER_SENTENCE * len(part) + 8) if capped else generate(text))
    return merge(answers) or (answers[-1] if answers else "")
