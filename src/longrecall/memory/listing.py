"""Every-X questions read a few evidence sentences at a time, and the answers merged.

Find-all retrieval hands the reader 8-64 sentences, one needle each. Asked to list every value in one go, a 135M
reader stops early or runs on past the last value (measured, docs/results/memory: with the evidence complete,
reading lost 36 of 50 every-X questions at 1M). Asked the same question over a few sentences at a time, it reads each
piece as it reads a single-needle question, which it gets right ~95% of the time. The reads of one question are
decoded as one batch when the generator can (`generate.many`). The pieces keep document order;
a piece the reader says holds nothing is dropped; repeated values are listed once.
"""
from __future__ import annotations

import inspect
import re
from typing import Callable, Sequence

from ..rag.chunking import Chunk

GROUP = 1  # sentences per read: measured, reader-v1 gives one value per read (6 worlds of 8-16 needles, complete
# evidence: F1 1.00 with 1, 0.50-0.56 with 2, 0.25-0.62 with 4)
BATCH = 16  # reads decoded together when the generator offers `.many` (one left-padded batch)
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


def answer_all(generate: Callable, prompts: Sequence[str], cap: int | None = None) -> list[str]:
    """Answers to `prompts`: one batch through `generate.many` when the reader offers it, else one at a time (with the
    token cap when the reader takes one; test readers are plain prompt -> text callables)."""
    many = getattr(generate, "many", None)
    if many:
        return many(prompts, cap=cap)
    if cap is not None and takes_cap(generate):
        return [generate(p, cap=cap) for p in prompts]
    return [generate(p) for p in prompts]


def read_in_pieces(question: str, chunks: Sequence[Chunk], generate: Callable, prompt: Callable[[str, Sequence[Chunk]], str],
                   group: int = GROUP) -> str:
    """Ask `question` over `group` evidence sentences at a time; the merged answers, or the last abstention when
    no piece holds anything."""
    texts = [prompt(question, chunks[i : i + group]) for i in range(0, len(chunks), group)]
    cap = TOKENS_PER_SENTENCE * group + 8
    answers = [a for j in range(0, len(texts), BATCH) for a in answer_all(generate, texts[j : j + BATCH], cap)]
    return merge(answers) or (answers[-1] if answers else "")
