"""The task-family registry: each family turns a spec and a seeded RNG into needles, a question and answers.

    longrecall niah families      # lists this table
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Callable

from ..errors import UserError
from . import needles as N
from .chains import build_chain
from .stories import category, kvlines, narrative, nonliteral
from .task import Needle, Task  # noqa: F401  (re-exported: families build these)
from .task import depths as _depths


def _distractor_names(kind: str, phrasing: str) -> list[str]:
    """Names for distractor needles: training samples (train or grammar phrasings) never see a held-out name, even
    as a distractor."""
    train, held = N.NAMES[kind]
    return N.pool(N.NAMES[kind], phrasing) if phrasing in ("train", "grammar") else list(train) + list(held)


def _pick(rng, pair, phrasing):
    return rng.choice(N.pool(pair, phrasing))


def _kv_task(spec, rng, n_keys: int, n_values: int, n_distractor_keys: int, ask: str) -> Task:
    kind = spec.needle_kind
    names = N.pool(N.NAMES[kind], spec.phrasing)
    name = rng.choice(names)
    tmpl = _pick(rng, N.NEEDLE_TEMPLATES, spec.phrasing)
    keys = N.distinct(rng, N.make_key, n_keys + n_distractor_keys)
    values = N.distinct(rng, lambda r: N.make_value(kind, r), n_keys * n_values + n_distractor_keys)
    needles, answers = [], []
    targets = []
    vi = 0
    for k in keys[:n_keys]:
        for _ in range(n_values):
            targets.append((k, values[vi]))
            answers.append(values[vi])
            vi += 1
    depths = _depths(rng, spec.depth, len(targets))
    for (k, v), d in zip(targets, depths):
        needles.append(Needle(N.needle_sentence(tmpl, name, k, v), d, "target", k, v))
    for k in keys[n_keys:]:
        v = values[vi]
        vi += 1
        needles.append(Needle(N.needle_sentence(tmpl, name, k, v), rng.random(), "distractor", k, v))
    if ask == "one":
        question = _pick(rng, N.QUESTIONS_ONE, spec.phrasing).format(name=name, key=keys[0])
    elif ask == "all_of_key":
        question = _pick(rng, N.QUESTIONS_ALL_OF_KEY, spec.phrasing).format(name=name, names=N.plural(name), key=keys[0])
    else:  # several keys at once
        listed = ", ".join(keys[: n_keys - 1]) + f" and {keys[n_keys - 1]}"
        question = f"What are the {N.plural(name)} for {listed}? Give each one."
    other_names = [x for x in _distractor_names(kind, spec.phrasing) if x != name]
    avoid = set(keys) | set(values)

    def dense(r: random.Random) -> str:
        k = N.make_key(r)
        while k in avoid:
            k = N.make_key(r)
        return N.needle_sentence(r.choice(N.NEEDLE_TEMPLATES[0]), r.choice(other_names), k, N.make_value(kind, r))

    per = 44 if kind == "uuid" else 16  # a uuid is up to 36 tokens in SmolLM2's tokenizer; key + separator
    prefix = f"The {name} for {keys[0]} is" if ask == "one" else ""
    metric = "contains" if len(answers) == 1 else "set"
    return Task(needles, question, answers, metric, 16 + per * len(answers), answer_prefix=prefix, value_kind=kind, dense=dense)


def single(spec, rng):
    return _kv_task(spec, rng, 1, 1, 0, "one")


def multikey(spec, rng):
    # 5-7 distractors by default: a blind pick among the values of the kind then earns at most 1/6 on average.
    n_dis = spec.n_distractors if spec.n_distractors is not None else rng.randint(5, 7)
    return _kv_task(spec, rng, 1, 1, n_dis, "one")


def _decoys(spec, rng, n: int) -> int:
    """Distractor needles for the answer-set families: at least as many as answers by default, so that naming
    every value of the kind in the text costs as much as it earns (the reward charges each wrong value)."""
    return spec.n_distractors if spec.n_distractors is not None else rng.randint(n, n + 2)


def multivalue(spec, rng):
    n = spec.n_needles or rng.randint(2, 4)
    return _kv_task(spec, rng, 1, n, _decoys(spec, rng, n), "all_of_key")


def multiquery(spec, rng):
    n = spec.n_needles or rng.randint(2, 4)
    return _kv_task(spec, rng, n, 1, _decoys(spec, rng, n), "several")


def all_needles(spec, rng):
    """'List every X': 2-32 needles of one name, the count unknown to the model, among needles of other names."""
    kind = spec.needle_kind
    n = spec.n_needles or rng.randint(2, max(2, min(32, spec.length // 256)))
    if not 1 <= n <= 64:
        raise UserError(f"all_needles takes 1-64 needles, got {n}: set --n-needles in that range")
    names = N.pool(N.NAMES[kind], spec.phrasing)
    name = rng.choice(names)
    others = [x for x in _distractor_names(kind, spec.phrasing) if x != name]
    tmpl = _pick(rng, N.NEEDLE_TEMPLATES, spec.phrasing)
    n_dis = _decoys(spec, rng, n)
    keys = N.distinct(rng, N.make_key, n + n_dis)
    pool_size = len(N.VALUE_WORDS) if kind == "word" else 10**9
    if n + n_dis > pool_size:
        raise UserError(f"only {pool_size} distinct word values exist: lower --n-needles or use --needle-kind number")
    values = N.distinct(rng, lambda r: N.make_value(kind, r), n + n_dis)
    depths = _depths(rng, spec.depth, n)
    needles = [Needle(N.needle_sentence(tmpl, name, k, v), d, "target", k, v) for k, v, d in zip(keys, values, depths)]
    for k, v in zip(keys[n:], values[n:]):
        needles.append(Needle(N.needle_sentence(tmpl, rng.choice(others), k, v), rng.random(), "distractor", k, v))
    question = _pick(rng, N.QUESTIONS_EVERY, spec.phrasing).format(name=name, names=N.plural(name))
    avoid = set(values)

    def dense(r):
        v = N.make_value(kind, r)
        while v in avoid:
            v = N.make_value(kind, r)
        return N.needle_sentence(r.choice(N.NEEDLE_TEMPLATES[0]), r.choice(others), N.make_key(r), v)

    per = 40 if kind == "uuid" else 12  # room for each value in full (a uuid: up to 36 tokens)
    return Task(needles, question, values[:n], "set", 32 + per * n, value_kind=kind, dense=dense)


def chain(spec, rng):
    return build_chain(spec, rng, Needle, Task)


def _var(rng):
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(5))


def vartrack(spec, rng):
    """RULER's variable tracking: VAR A = 12345, VAR B = VAR A, ...; asked from the value or from the last name."""
    hops = spec.hops or rng.randint(1, 4)
    n_chains = 1 + (spec.n_distractors if spec.n_distractors is not None else 2)
    names = N.distinct(rng, _var, n_chains * (hops + 1))
    values = N.distinct(rng, lambda r: str(r.randint(10000, 99999)), n_chains)
    needles = []
    for c in range(n_chains):
        vs = names[c * (hops + 1): (c + 1) * (hops + 1)]
        role = "target" if c == 0 else "distractor"
        ds = sorted(_depths(rng, spec.depth, hops + 1)) if c == 0 else sorted(rng.random() for _ in vs)
        needles.append(Needle(f"VAR {vs[0]} = {values[c]}.", ds[0], role, vs[0], values[c]))
        for a, b, d in zip(vs, vs[1:], ds[1:]):
            needles.append(Needle(f"VAR {b} = VAR {a}.", d, role, b, a))
    target = names[: hops + 1]
    direction = spec.direction if spec.direction != "any" else rng.choice(["forward", "backward"])
    if direction == "forward":
        q = rng.choice(
            [
                f"Find all variables that are assigned the value {values[0]}, directly or through other variables.",
                f"Which variables end up holding the value {values[0]}? List every one.",
            ]
        )
        return Task(needles, q, target, "set", 32 + 8 * len(target), value_kind="var")
    q = rng.choice(
        [
            f"Following the assignments, what number does VAR {target[-1]} hold?",
            f"What is the value of VAR {target[-1]} once every assignment is followed back?",
        ]
    )
    return Task(needles, q, [values[0]], "chain", 48, chain=list(reversed(target[:-1])) + [values[0]], value_kind="number")


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable
    description: str


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("single", single, "one needle; return its value"),
        Family("multikey", multikey, "the asked key among distractor keys of the same shape"),
        Family("multivalue", multivalue, "every value of one key (2-4)"),
        Family("multiquery", multiquery, "several keys asked at once"),
        Family("all_needles", all_needles, "list every needle of a kind (2-32, count unknown), among as many needles of other kinds"),
        Family("chain", chain, "related needles: an entity chain of 1-4 hops with distractor chains, asked from either end"),
        Family("vartrack", vartrack, "variable tracking: chains of assignments, asked from the value or the last name"),
        Family("nonliteral", nonliteral, "the question shares no word with the needle but the person (bike/bicycle); 1 or 2 hops"),
        Family("kvlines", kvlines, "one record among near-identical key-value records (use with haystack needles)"),
        Family("category", category, "every city someone visited (2-6), among cities named but not visited"),
        Family("narrative", narrative, "an object travels with whoever carries it: where is it now? (2 or 3 facts)"),
    ]
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise UserError(f"unknown task family '{name}': use one of {', '.join(FAMILIES)}")
    return FAMILIES[name]
