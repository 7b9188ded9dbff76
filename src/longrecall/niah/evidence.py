"""Evidence credit: the model names its supporting facts before it answers, and the facts are scored too.

An answer-only reward pays nothing for *finding* the evidence until the answer is right (LongRLVR, 2026). With
evidence credit the prompt asks for

    Evidence: <the sentences of the text that answer the question, copied>
    Answer: <the answer>

and the reward is (1 − w) · score(answer) + w · F1(evidence), where F1 compares the cited sentences with the
sample's target needles, which the generator knows exactly. A cited sentence counts for a needle when it quotes it (80% of
its words) or names both its key and its value; a cited sentence that matches no target (a distractor, or haystack text)
costs precision. So copying the whole text earns little: its precision is near 0.

Pure: used by the Atropos env and the TRL reward alike.
"""
from __future__ import annotations

import re

from .scoring import normalize, score

INSTRUCTION = ("First write 'Evidence:' and copy the sentences of the text that answer the question, one per line. "
               "Then write 'Answer:' and the answer.")
_ANSWER = re.compile(r"^\s*answer\s*:", re.IGNORECASE | re.MULTILINE)
_EVIDENCE = re.compile(r"^\s*evidence\s*:", re.IGNORECASE | re.MULTILINE)


def ask_for_evidence(sample, extra_tokens: int = 160):
    """The sample with its question asking for the supporting sentences first, and room for them in the answer."""
    import dataclasses

    return dataclasses.replace(sample, question=f"{sample.question}\n{INSTRUCTION}", answer_budget=sample.answer_budget + extra_tokens)


def split(output: str) -> tuple[str, str]:
    """(evidence text, answer text). Without an 'Answer:' line the whole output is the answer and there is no evidence."""
    m = _ANSWER.search(output)
    if not m:
        return "", output
    evidence = output[: m.start()]
    e = _EVIDENCE.search(evidence)
    return (evidence[e.end():] if e else evidence).strip(), output[m.end():].strip()


def _lines(evidence: str) -> list[str]:
    parts = re.split(r"\n+|(?<=[.!?])\s+(?=[A-Z\"'])", evidence)
    return [p.strip(" -*\t\"'") for p in parts if len(p.strip(" -*\t\"'")) >= 3]


def _d(sample) -> dict:
    return sample if isinstance(sample, dict) else sample.to_dict()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _cites(line: str, needle: dict) -> bool:
    """The line quotes the needle (80% of its words, in any order, its value among them), or names both its key and
    its value. A distractor in the same template differs in the value, so it never quotes a target."""
    words, have = _words(needle.get("text", "")), set(_words(line))
    value = _words(str(needle.get("value") or ""))
    if words and sum(w in have for w in words) >= 0.8 * len(words) and all(v in have for v in value):
        return True
    low = normalize(line)
    fields = [normalize(str(f)) for f in (needle.get("value"), needle.get("key")) if f]
    return bool(fields) and all(f and f in low for f in fields)


def evidence_f1(sample, evidence: str) -> float:
    """F1 of the cited sentences against the sample's target needles (0 when nothing is cited)."""
    d = _d(sample)
    targets = [n for n in d.get("needles", []) if n.get("role") == "target"]
    lines = _lines(evidence)
    if not targets or not lines:
        return 0.0
    found = [any(_cites(ln, t) for ln in lines) for t in targets]
    useful = [any(_cites(ln, t) for t in targets) for ln in lines]
    recall, precision = sum(found) / len(targets), sum(useful) / len(lines)
    return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)


def credit(sample, output: str, weight: float) -> float:
    """(1 − weight) · the answer's score + weight · the evidence F1."""
    evidence, answer = split(output)
    return (1.0 - weight) * score(sample, answer) + weight * evidence_f1(sample, evidence)


def details(sample, output: str, weight: float) -> dict:
    evidence, answer = split(output)
    a, e = score(sample, answer), evidence_f1(sample, evidence)
    return {"answer": a, "evidence_f1": e, "reward": (1.0 - weight) * a + weight * e}
