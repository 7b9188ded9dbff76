"""Scoring of answers: normalised exact match, substring-all/any, set F1, hop-wise chain credit, and one reward.

Every metric is a small pure function pinned by golden tests (tests/niah/test_scoring.py).
"""
from __future__ import annotations

import re
from typing import Callable

from .needles import VALUE_WORDS

_DIGIT_SEP = re.compile(r"(?<=\d)[,\u202f\u00a0 ](?=\d{3}\b)")
_NON_ALNUM = re.compile(r"[^a-z0-9\-]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_WORDS = set(VALUE_WORDS)


def normalize(text: str) -> str:
    """Lowercase, join digit groups (1,234,567 -> 1234567), punctuation to spaces, collapse whitespace."""
    text = _DIGIT_SEP.sub("", str(text).lower())
    return " ".join(_NON_ALNUM.sub(" ", text).split())


def found(ref: str, output: str) -> bool:
    """Whole-token containment of the normalised reference in the normalised output (1234567 is not in 12345678)."""
    r, o = normalize(ref), normalize(output)
    if not r:
        return False
    return re.search(rf"(?<![a-z0-9]){re.escape(r)}(?![a-z0-9])", o) is not None


def exact_match(output: str, refs: list[str]) -> float:
    o = normalize(output)
    return float(any(o == normalize(r) for r in refs))


def substring_all(output: str, refs: list[str]) -> float:
    """Fraction of references present in the output (RULER's string_match_all)."""
    return sum(found(r, output) for r in refs) / len(refs) if refs else 0.0


def substring_any(output: str, refs: list[str]) -> float:
    return float(any(found(r, output) for r in refs))


def candidates(output: str, value_kind: str) -> set[str]:
    """Values of the asked shape that the output claims (for precision)."""
    if value_kind == "number":
        return set(re.findall(r"(?<!\d)\d{5,7}(?!\d)", _DIGIT_SEP.sub("", output)))
    if value_kind == "uuid":
        return set(_UUID.findall(output.lower()))
    if value_kind == "word":
        return {w for w in normalize(output).split() if w in _WORDS}
    if value_kind == "var":
        return set(re.findall(r"\b[A-Z]{5}\b", output))
    return set()


def set_prf(output: str, refs: list[str], value_kind: str) -> tuple[float, float, float]:
    """Precision, recall, F1 of the set of values in the output against the references."""
    tp = sum(found(r, output) for r in refs)
    ref_norm = {normalize(r) for r in refs}
    fp = sum(1 for c in candidates(output, value_kind) if normalize(c) not in ref_norm)
    recall = tp / len(refs) if refs else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def chain_credit(output: str, answer: str, chain: list[str]) -> float:
    """1 if the chain's end is named; else half credit per intermediate hop named, in order from the start."""
    if found(answer, output):
        return 1.0
    hops = chain[:-1]
    if not hops:
        return 0.0
    got = 0
    for h in hops:
        if not found(h, output):
            break
        got += 1
    return 0.5 * got / len(hops)


def _distractor_hit(sample: dict, output: str) -> bool:
    answers = {normalize(a) for a in sample["answers"]}
    for n in sample.get("needles", []):
        if n.get("role") == "distractor" and normalize(n.get("value", "")) not in answers and found(n["value"], output):
            return True
    return False


def _contains(sample, output):
    s = substring_all(output, sample["answers"])
    return s * (0.5 if s and _distractor_hit(sample, output) else 1.0)


def _recall(sample, output):
    return substring_all(output, sample["answers"])


def _set_f1(sample, output):
    return set_prf(output, sample["answers"], sample.get("value_kind", ""))[2]


def _chain(sample, output):
    s = chain_credit(output, sample["answers"][0], sample.get("chain") or sample["answers"])
    return s * (0.5 if s == 1.0 and _distractor_hit(sample, output) else 1.0)


METRICS: dict[str, Callable[[dict, str], float]] = {
    "contains": _contains,  # the one answer is present (halved if a distractor's value is also given)
    "recall": _recall,  # fraction of the answers present
    "set_f1": _set_f1,  # F1 of the claimed set of values
    "chain": _chain,  # end of the chain, or partial credit per hop
    "exact": lambda s, o: exact_match(o, s["answers"]),
}


def _as_dict(sample) -> dict:
    return sample if isinstance(sample, dict) else sample.to_dict()


def score(sample, output: str) -> float:
    """The reward in [0, 1] for `output` as an answer to `sample` (a Sample or its dict)."""
    s = _as_dict(sample)
    return float(min(1.0, max(0.0, METRICS[s["metric"]](s, output or ""))))


def score_details(sample, output: str) -> dict:
    s = _as_dict(sample)
    output = output or ""
    p, r, f = set_prf(output, s["answers"], s.get("value_kind", ""))
    return {
        "score": score(s, output),
        "exact": exact_match(output, s["answers"]),
        "substring_all": substring_all(output, s["answers"]),
        "substring_any": substring_any(output, s["answers"]),
        "precision": p,
        "recall": r,
        "f1": f,
        "distractor_hit": _distractor_hit(s, output),
    }
