"""Scoring of answers: one normaliser, one rule for every family, and the reward in [0, 1].

The rule: an answer is paid for the right values it names and charged for every *other* value of the same kind
that it names ("kind": numbers, words, uuids, people, lockers, rooms, buildings, cities, variables, places). So

    reward = max(0, right - wrong) / len(answers)

for the answer-set families; for a single answer that is 1 when it is named and nothing wrong is, else 0, and a
chain earns half credit per hop it walked from the start only when it names nothing wrong. Values that the question
itself names, and the target chain's own hops, are never charged. Candidates are found with the *same* normaliser
that matching uses (case, hyphens, punctuation, digit grouping), so no spelling of a dump escapes the charge.

Pinned by golden tests (tests/niah/test_scoring.py) and by the attack suite (tests/niah/test_reward_attacks.py,
table in docs/reward.md).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

from .chains import BUILDINGS, CITIES, PEOPLE
from .lexicon import DISTRICTS, PLACES, TRAVEL_CITIES
from .needles import VALUE_WORDS

_DIGIT_SEP = re.compile(r"(?<=\d)[,\u202f\u00a0 ](?=\d{3}\b)")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_HEX_SHAPE = (8, 4, 4, 4, 12)
_HEX = re.compile(r"[0-9a-f]+")

# Closed vocabularies of the generator, by kind (open kinds are found by shape below).
_VOCAB = {
    "word": tuple(VALUE_WORDS),
    "entity": tuple(PEOPLE) + tuple(BUILDINGS) + tuple(CITIES),
    "place": tuple(PLACES) + tuple(DISTRICTS[0]) + tuple(DISTRICTS[1]),
    "city": tuple(TRAVEL_CITIES[0]) + tuple(TRAVEL_CITIES[1]),
}
# Which kinds of value an answer to a sample of each value_kind is charged for.
_KINDS = {
    "number": ("number",),
    "word": ("word",),
    "uuid": ("uuid",),
    "var": ("var", "number"),
    "entity": ("entity", "number", "room"),
    "place": ("place",),
    "city": ("city",),
}


def normalize(text: str) -> str:
    """Lowercase, join digit groups (1,234,567 -> 1234567), every non-alphanumeric (hyphens too) to one space."""
    text = _DIGIT_SEP.sub("", str(text).lower())
    return " ".join(_NON_ALNUM.sub(" ", text).split())


def found(ref: str, output: str) -> bool:
    """Whole-token containment of the normalised reference in the normalised output (1234567 is not in 12345678)."""
    r = normalize(ref)
    return bool(r) and f" {r} " in f" {normalize(output)} "


def exact_match(output: str, refs: list[str]) -> float:
    o = normalize(output)
    return float(any(o == normalize(r) for r in refs))


def substring_all(output: str, refs: list[str]) -> float:
    """Fraction of references present in the output (RULER's string_match_all)."""
    return sum(found(r, output) for r in refs) / len(refs) if refs else 0.0


def substring_any(output: str, refs: list[str]) -> float:
    return float(any(found(r, output) for r in refs))


def _shaped(tokens: list[str], raw: str, kind: str) -> set[str]:
    """Normalised values of an open kind, found by their shape."""
    if kind == "number":  # 4+ digits: needle values (7), vartrack values (5), lockers (4)
        return {t for t in tokens if t.isdigit() and len(t) >= 4}
    if kind == "room":
        return {t for t in tokens if len(t) == 4 and t[0].isalpha() and t[1:].isdigit()}
    if kind == "uuid":  # whole or cut short: a uuid's first two groups are enough to name one
        out = set()
        for i in range(len(tokens) - 1):
            w = []
            for t, n in zip(tokens[i: i + 5], _HEX_SHAPE):
                if not _HEX.fullmatch(t) or len(t) > n or (len(t) < n and len(w) < 1):
                    break
                w.append(t)
                if len(t) < n:
                    break
            if len(w) >= 2:
                out.add(" ".join(w))
        return out
    if kind == "var":  # upper-case names in the raw text; lower-case ones are caught by the sample's lexicon
        return {t.lower() for t in re.findall(r"(?<![A-Za-z])[A-Z]{5}(?![A-Za-z])", raw)}
    return set()


@lru_cache(maxsize=8)
def _vocab(kinds: tuple[str, ...]) -> frozenset[str]:
    return frozenset(normalize(w) for k in kinds for w in _VOCAB.get(k, ()))


def _named(output: str, lexicon: set[str], kinds: tuple[str, ...]) -> set[str]:
    """Every value of the given kinds that the output names: lexicon entries, then values found by shape."""
    norm = normalize(output)
    padded = f" {norm} "
    tokens = norm.split()
    out = {v for v in lexicon if v and f" {v} " in padded}
    for k in kinds:
        out |= _shaped(tokens, output, k)
    return out


def candidates(output: str, value_kind: str) -> set[str]:
    """Values of the asked kind that a text names, normalised (used for precision and for DPO negatives)."""
    kinds = _KINDS.get(value_kind, (value_kind,))
    return _named(output, set(_vocab(kinds)), kinds)


def _lexicon(s: dict) -> set[str]:
    """The sample's own values of the charged kinds: every needle value, and keys where keys are values."""
    kind = s.get("value_kind", "")
    keys_are_values = s.get("metric") == "chain" or kind in ("var", "entity")
    lex = set(_vocab(_KINDS.get(kind, (kind,))))
    for n in s.get("needles", []):
        lex.add(normalize(n.get("value", "")))
        if keys_are_values:
            lex.add(normalize(n.get("key", "")))
    return lex - {""}


def judge(s: dict, output: str) -> tuple[set[str], set[str]]:
    """(right, wrong): the reference values named, and the other values of the charged kinds named.

    Never charged: the references, the target chain's hops, and values that the question itself names.
    """
    kind = s.get("value_kind", "")
    kinds = _KINDS.get(kind, (kind,))
    refs = {normalize(a) for a in s["answers"]} - {""}
    allowed = refs | {normalize(c) for c in s.get("chain") or []}
    allowed |= _named(s.get("question", ""), _lexicon(s), kinds)
    named = _named(output, _lexicon(s) | refs, kinds)
    right = {r for r in refs if f" {r} " in f" {normalize(output)} "}
    return right, named - allowed - right


def set_prf(output: str, refs: list[str], value_kind: str) -> tuple[float, float, float]:
    """Precision, recall, F1 of the values named against the references (reported beside the reward)."""
    sample = {"answers": refs, "value_kind": value_kind}
    right, wrong = judge(sample, output)
    tp, fp = len(right), len(wrong)
    recall = tp / len(set(map(normalize, refs))) if refs else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _net(s, output):
    """(right - wrong) / number of answers: each wrong value named cancels one right one."""
    right, wrong = judge(s, output)
    n = len({normalize(a) for a in s["answers"]} - {""})
    return max(0, len(right) - len(wrong)) / n if n else 0.0


def chain_credit(output: str, answer: str, chain: list[str]) -> float:
    """1 if the chain's end is named; else half credit per hop named, in order from the start."""
    if found(answer, output):
        return 1.0
    hops = chain[:-1]
    got = 0
    for h in hops:
        if not found(h, output):
            break
        got += 1
    return 0.5 * got / len(hops) if hops else 0.0


def _chain(s, output):
    _, wrong = judge(s, output)
    if wrong:
        return 0.0
    return chain_credit(output, s["answers"][0], s.get("chain") or s["answers"])


METRICS: dict[str, Callable[[dict, str], float]] = {
    "contains": _net,  # one answer: named, and no other value of its kind named
    "set": _net,  # several answers: (right - wrong) / n
    "recall": _net,  # sample files of generator version 1 (multivalue, multiquery)
    "set_f1": _net,  # sample files of generator version 1 (all_needles, vartrack forward)
    "chain": _chain,  # the chain's end, or half credit per hop from the start, only when nothing wrong is named
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
    right, wrong = judge(s, output)
    n = len({normalize(a) for a in s["answers"]} - {""})
    tp, fp = len(right), len(wrong)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / n if n else 0.0
    return {
        "score": score(s, output),
        "exact": exact_match(output, s["answers"]),
        "substring_all": substring_all(output, s["answers"]),
        "substring_any": substring_any(output, s["answers"]),
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "wrong": sorted(wrong),
        "distractor_hit": bool(wrong),
    }
