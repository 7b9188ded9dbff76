"""Answers that try to earn reward without reading the question: the reward's adversarial audit.

    longrecall niah attacks --n 200 --output docs/reward.md

Each attack turns a sample into an answer text, trimmed to the sample's answer budget in tokens, as a policy that
dumps values would. `attack_table` scores every attack on every family; the test suite
(tests/niah/test_reward_attacks.py) holds the bounds: no attack averages more than 0.2 on any family, and hedging
between the answer and one other value averages at most 0.5.
"""
from __future__ import annotations

import random
import re
import string
import uuid
from typing import Callable

from .needles import VALUE_WORDS
from .scoring import _VOCAB, candidates, normalize, score

MAX_ATTACK = 0.2
MAX_HEDGE = 0.5


def _vocabulary(s: dict, rng: random.Random) -> list[str]:
    kind = s["value_kind"]
    if kind == "word":
        vals = list(VALUE_WORDS)
    elif kind in ("entity", "place", "city"):
        vals = list(_VOCAB[kind])
    elif kind == "uuid":
        vals = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(40)]
    elif kind == "var":
        vals = ["".join(rng.choice(string.ascii_uppercase) for _ in range(5)) for _ in range(60)]
    else:
        vals = [str(rng.randint(1_000_000, 9_999_999)) for _ in range(60)]
    rng.shuffle(vals)
    return vals


def _in_context_order(s: dict) -> list[dict]:
    """Needles as a reader meets them: by position in the context (the sample lists its targets first)."""
    return sorted(s["needles"], key=lambda n: n.get("char_offset", 0))


def _needle_texts(s: dict) -> str:
    return " ".join(n["text"] for n in _in_context_order(s))


def _values(s: dict) -> list[str]:
    return [n["value"] for n in _in_context_order(s)]


def _context_kind(s: dict) -> list[str]:
    """Every value of the asked kind in the context, found by plain patterns (not the reward's own extractor)."""
    ctx = s["context"]
    pats = {
        "number": r"\b\d{4,}\b",
        "uuid": r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
        "var": r"\b[A-Z]{5}\b",
        "entity": r"\b(?:[A-Z][a-z]+(?: [A-Z][a-z]+)?|[A-Z]\d{3}|\d{4})\b",
    }
    if s["value_kind"] in ("word", "place", "city"):  # closed vocabularies of single words
        words = {w.lower() for w in (VALUE_WORDS if s["value_kind"] == "word" else _VOCAB[s["value_kind"]])}
        return list(dict.fromkeys(w for w in re.findall(r"[a-z]+", ctx.lower()) if w in words))
    out = re.findall(pats.get(s["value_kind"], r"\b\d{4,}\b"), ctx)
    if s["value_kind"] == "var":
        out += re.findall(r"\b\d{5}\b", ctx)
    return list(dict.fromkeys(out))


def _hedge(s: dict, rng: random.Random) -> str:
    """The answer and one other value of its kind: a distractor's when the sample has one."""
    refs = {normalize(a) for a in s["answers"]}
    others = [v for v in _values(s) + [n["key"] for n in s["needles"]] if v and normalize(v) not in refs]
    others = [v for v in others if candidates(v, s["value_kind"]) or s["metric"] == "chain"]
    if s["metric"] == "chain":  # an entity of the answer's own type, from a distractor chain
        last = s["answers"][0]
        same = [n["value"] if n["role"] == "distractor" else "" for n in s["needles"]]
        same = [v for v in same if v and normalize(v) not in refs and _same_type(v, last)]
        others = same or [n["key"] for n in s["needles"] if normalize(n["key"]) not in refs] or others
    other = rng.choice(others) if others else _vocabulary(s, rng)[0]
    pair = [s["answers"][0], other]
    rng.shuffle(pair)
    return f"Either {pair[0]} or {pair[1]}."


def _same_type(a: str, b: str) -> bool:
    def t(x):
        return "num" if x.isdigit() else "room" if re.fullmatch(r"[A-Z]\d{3}", x) else "var" if re.fullmatch(r"[A-Z]{5}", x) else "name"
    return t(a) == t(b)


# name -> (maker, what it needs). "needles": scored on samples with a distractor needle; "context": on samples whose
# context holds another value of the asked kind (with exactly one such value, copying it is reading, not gaming).
ATTACKS: dict[str, tuple[Callable[[dict, random.Random], str], str]] = {
    "every needle value": (lambda s, r: ", ".join(_values(s)), "needles"),
    "every needle key and value": (lambda s, r: ", ".join(f"{n['key']}: {n['value']}" for n in _in_context_order(s)), "needles"),
    "every key and value, lower case": (lambda s, r: " ".join(f"{n['key']} {n['value']}" for n in _in_context_order(s)).lower(), "needles"),
    "every needle value, hyphen-joined": (lambda s, r: "-".join(_values(s)).lower(), "needles"),
    "every capitalised word of the needles": (lambda s, r: " ".join(re.findall(r"\b[A-Z][A-Za-z0-9]*", _needle_texts(s))), "needles"),
    "the needle sentences": (lambda s, r: _needle_texts(s), "needles"),
    "every value of the kind in the context": (lambda s, r: ", ".join(_context_kind(s)), "context"),
    "one value of the kind from the context, at random": (lambda s, r: r.choice(_context_kind(s)), "context"),
    "answer, then every needle value": (lambda s, r: s["answers"][0] + ". Also: " + ", ".join(_values(s)), "needles"),
    "every value of the kind in the vocabulary": (lambda s, r: ", ".join(_vocabulary(s, r)), ""),
    "copy the haystack": (lambda s, r: s["context"], ""),
    "repeat the question": (lambda s, r: s["question"], ""),
    "empty": (lambda s, r: "", ""),
    "I don't know": (lambda s, r: "I don't know.", ""),
}
HEDGE = "hedge: the answer and one other value"


def trim(text: str, budget: int, tok) -> str:
    """The first `budget` tokens of a text, as a policy limited to the answer budget would emit."""
    ids = tok(text, add_special_tokens=False)["input_ids"][:budget]
    return tok.decode(ids)


def _has_decoy(s: dict) -> bool:
    refs = {normalize(a) for a in s["answers"]}
    return any(normalize(v) not in refs for v in _context_kind(s))


def attack_scores(samples: list[dict], tok, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """{attack: {family: [reward per sample]}}, plus the correct answer and the hedge, for the table and tests."""
    rng = random.Random(seed)
    out: dict[str, dict[str, list[float]]] = {}

    def add(name, s, text):
        out.setdefault(name, {}).setdefault(s["task"], []).append(score(s, trim(text, s["answer_budget"], tok)))

    for s in samples:
        for name, (make, needs) in ATTACKS.items():
            if needs == "context" and not _has_decoy(s):
                continue
            if needs == "needles" and not any(n["role"] == "distractor" for n in s["needles"]):
                continue
            add(name, s, make(s, rng))
        if s["metric"] in ("contains", "chain"):
            add(HEDGE, s, _hedge(s, rng))
        add("correct answer with filler", s, f"Sure. The answer is {', '.join(s['answers'])}.")
    return out


def markdown_table(scores: dict[str, dict[str, list[float]]], families: list[str]) -> str:
    head = "| attack | " + " | ".join(families) + " |\n|---|" + "---|" * len(families) + "\n"
    rows = []
    for name, by_fam in scores.items():
        cells = []
        for f in families:
            v = by_fam.get(f, [])
            cells.append(f"{sum(v) / len(v):.3f} (n={len(v)})" if v else "–")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def audit_samples(tok, n: int = 200, length: int = 1024, seed: int = 0, families: list[str] | None = None) -> list[dict]:
    """n samples per family over every haystack, needle kind, phrasing pool, depth and direction, seeded."""
    from tqdm.auto import tqdm

    from .families import FAMILIES
    from .generate import GenSpec, generate_sample

    hays, kinds, phr = ["noise", "prose", "needles"], ["number", "word", "uuid"], ["train", "heldout"]
    specs = [
        GenSpec(task=f, length=length, depth=(i % 11) / 10, haystack=hays[i % 3], needle_kind=kinds[(i // 3) % 3],
                phrasing=phr[(i // 9) % 2], seed=seed * 100_000 + i)
        for f in (families or list(FAMILIES)) for i in range(n)
    ]
    return [generate_sample(sp, tok).to_dict() for sp in tqdm(specs, desc="audit samples", disable=len(specs) < 50)]
