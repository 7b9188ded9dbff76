"""The memory end to end: held-out tasks planted far apart in a memory of N tokens, each asked through `Memory.ask`
(the `longrecall memory ask` path: retrieval, prompt, reader), scored, and every miss accounted for.

A *world* is one memory: a shared base text (procedural prose and the installed packages' docs, half each) with one
task of each family planted in it, their needles spread over the whole text (a chain's links sit far apart), plus
questions about things the memory does not hold (absent: the reader should say so). Tasks of one world never share
a name, key or value, so every question has one right answer in that memory.

Per question: the score (the environment's reward), whether the evidence held every target needle, and, for a miss,
which hop was lost first and whether retrieval or reading lost it. Used by benchmarks/bench_memory_e2e.py.
"""
from __future__ import annotations

import random
import re
import statistics
import time
from dataclasses import dataclass, field

from .listing import abstains as abstained  # a reader that says the notes do not hold the answer

FAMILIES = ("single", "all_needles", "chain", "nonliteral")
ABSENT_FAMILIES = ("single", "chain", "nonliteral")  # "every X" asks about a kind that is always somewhere


@dataclass
class Item:
    """One question of a world: the scoring dict (as niah.scoring reads it) and its target needles in hop order."""

    family: str
    sample: dict
    targets: list[str]
    planted: bool = True


@dataclass
class World:
    text: str
    items: list[Item] = field(default_factory=list)


def _spec(family: str, i: int, seed: int, rng: random.Random, planted: bool = True, phrasing: str = "heldout"):
    from ..niah import GenSpec

    kw: dict = {} if planted else {"n_distractors": 0}  # an absent question needs only its own names
    if family == "all_needles":
        kw["n_needles"] = (8, 16, 32, 64)[i % 4]
        kw["needle_kind"] = "number"
    elif family == "chain":
        kw["hops"] = (2, 3, 4)[i % 3]
    elif family == "nonliteral":
        kw["hops"] = 1
    elif family == "single":
        kw["needle_kind"] = ("number", "word", "uuid")[i % 3]
    return GenSpec(task=family, length=65536, depth=rng.random(), haystack="prose", phrasing=phrasing, seed=seed, **kw)


def _identity(task) -> set[str]:
    from ..niah.scoring import normalize

    return {normalize(x) for n in task.needles for x in (n.key, n.value)} - {""}


@dataclass
class Taken:
    """What a world already holds: names, keys and values, the kinds asked with "every X", and the needle texts."""

    idents: set[str] = field(default_factory=set)
    kinds: set[str] = field(default_factory=set)
    texts: list[str] = field(default_factory=list)

    def clashes(self, task, kinds: set[str]) -> bool:
        texts = [n.text.lower() for n in task.needles]
        return bool(_identity(task) & self.idents) or any(k in t for k in self.kinds for t in texts) or any(
            k in t for k in kinds for t in self.texts)

    def add(self, task, kinds: set[str]) -> None:
        self.idents |= _identity(task)
        self.kinds |= kinds
        self.texts += [n.text.lower() for n in task.needles]


def _kinds(family: str, task) -> set[str]:
    """An every-X question's X (e.g. "vault combination"): no other needle of its world may name it."""
    from ..niah import needles as N

    if family != "all_needles":
        return set()
    q = task.question.lower()
    names = {x.lower() for pair in N.NAMES.values() for pool in pair for x in pool}
    return {x for x in names if x in q or N.plural(x).lower() in q}


def make_item(family: str, i: int, seed: int, taken: Taken, planted: bool = True, tries: int = 50,
              phrasing: str = "heldout") -> Item:
    """Task i of a family that clashes with nothing the world holds (which it then joins). Held-out phrasings unless
    asked otherwise (the reader's training data, data/reader.py, uses the training ones)."""
    from ..niah.families import get_family

    for t in range(tries):
        label = "memory-e2e" if phrasing == "heldout" else f"memory-train-{phrasing}"
        rng = random.Random(f"{label}-{family}-{seed}-{i}-{t}")
        spec = _spec(family, i, seed * 1000 + i, rng, planted, phrasing)
        task = get_family(family).build(spec, rng)
        kinds = _kinds(family, task)
        if taken.clashes(task, kinds):
            continue
        taken.add(task, kinds)
        sample = {"task": family, "question": task.question, "answers": list(task.answers), "metric": task.metric,
                  "chain": list(task.chain), "value_kind": task.value_kind, "answer_budget": task.answer_budget,
                  "needles": [{"text": n.text, "key": n.key, "value": n.value, "role": n.role, "depth": n.depth}
                              for n in task.needles]}
        return Item(family, sample, [n.text for n in task.needles if n.role == "target"], planted)
    raise RuntimeError(f"no {family} task without a clash after {tries} draws")  # the name pools are far larger


def base_text(n_chars: int, seed: int) -> str:
    """Procedural prose and the packages' docs (real text) in alternating ~200k-character pieces, n_chars in all."""
    from ..niah.haystacks import package_docs_text, prose_text

    docs = re.sub(r"\s+", " ", package_docs_text())
    wrapped = docs + " " + docs  # a slice that runs off the end continues from the start
    parts, size, i, pos = [], 0, 0, 0
    while size < n_chars:
        if i % 2 == 0 or len(docs) < 1000:
            p = prose_text(1500, seed * 100_003 + i)
        else:
            p, pos = wrapped[pos:pos + 200_000], (pos + 200_000) % len(docs)
        parts.append(p)
        size += len(p) + 1
        i += 1
    return " ".join(parts)[:n_chars]


def plant(text: str, items: list[Item]) -> str:
    """Each planted item's needles at the sentence boundary at or after depth x len(text), all in one splice."""
    inserts = []
    for it in items:
        if not it.planted:
            continue
        for n in it.sample["needles"]:
            pos = text.find(". ", int(n["depth"] * max(0, len(text) - 2)))
            inserts.append((len(text) if pos < 0 else pos + 2, n["text"]))
    out, last = [], 0
    for pos, s in sorted(inserts, key=lambda x: x[0]):
        out += [text[last:pos], s, " "]
        last = pos
    out.append(text[last:])
    return "".join(out)


def make_world(base: str, w: int, seed: int, families=FAMILIES, absent: int = 1, phrasing: str = "heldout") -> World:
    """World w: one task of each family planted in `base`, and `absent` questions about things it does not hold."""
    taken = Taken()
    items = [make_item(f, w, seed, taken, phrasing=phrasing) for f in families]
    fams = [f for f in ABSENT_FAMILIES if f in families] or list(families)
    items += [make_item(fams[(w + j) % len(fams)], 10_000 + w * 10 + j, seed, taken, planted=False, phrasing=phrasing)
              for j in range(absent)]
    return World(plant(base, items), items)


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def account(item: Item, context: str, answer: str | None, score: float) -> dict:
    """Evidence recall, and for a miss the first lost hop and who lost it (retrieval: not in the evidence)."""
    ctx = _norm(context)
    held = [_norm(t) in ctx for t in item.targets]
    lost_hop = next((j for j, h in enumerate(held) if not h), None)
    if score >= 0.999:
        by = None
    else:
        by = "retrieval" if lost_hop is not None else "reading"
    return {"evidence_recall": sum(held) / max(1, len(held)), "evidence_complete": all(held),
            "lost_hop": lost_hop, "lost_by": by}


def ask_item(mem, item: Item, strategy: str, generate: bool, k: int = 6, budget_chars: int = 6000, focus: bool = True,
             read_group: int | None = None, order: str = "document", read_on: bool = True, closest: bool = True) -> dict:
    """One question through Memory.ask, timed; nothing found counts as an abstention."""
    from ..errors import NotFound
    from ..niah.scoring import score

    t0 = time.perf_counter()
    try:
        res = mem.ask(item.sample["question"], k=k, generate=generate, budget_chars=budget_chars, strategy=strategy, focus=focus,
                       read_group=read_group, order=order, read_on=read_on, closest=closest)
        context, answer, walk, onward, chosen = res.context, res.answer, res.walk, res.onward, res.chosen_from
    except NotFound:
        context, answer, walk, onward, chosen = "", None, [], [], 0
    latency = time.perf_counter() - t0
    row = {"family": item.family, "planted": item.planted, "question": item.sample["question"],
           "answers": item.sample["answers"], "answer": answer, "walk": walk, "onward": onward, "chosen_from": chosen, "latency_s": round(latency, 3),
           "hops": len(item.targets), "focus": focus, "evidence_chars": len(context)}
    if not item.planted:
        row["abstained"] = abstained(answer) if generate else None
        return row
    s = score(item.sample, answer or "") if generate else None
    row["score"] = s
    row.update(account(item, context, answer, s if s is not None else 0.0))
    if not generate:
        row["lost_by"] = "retrieval" if not row["evidence_complete"] else None
    return row


def summarize(rows: list[dict], seed: int = 0) -> dict:
    """Per family: score with its 95% interval, evidence recall, misses by hop and cause, latency p50/p95."""
    from ..eval import stats

    out: dict = {}
    for fam in dict.fromkeys(r["family"] for r in rows if r["planted"]):
        rs = [r for r in rows if r["planted"] and r["family"] == fam]
        scores = [r["score"] for r in rs if r.get("score") is not None]
        lost: dict = {}
        for r in rs:
            if r["lost_by"]:
                key = f"{r['lost_by']}@hop{r['lost_hop'] + 1}" if r["lost_by"] == "retrieval" else "reading"
                lost[key] = lost.get(key, 0) + 1
        out[fam] = {"n": len(rs), "score": stats.summarize(scores, seed=seed) if scores else None,
                    "evidence_complete": stats.summarize([float(r["evidence_complete"]) for r in rs], seed=seed),
                    "evidence_recall": statistics.fmean(r["evidence_recall"] for r in rs), "lost": lost,
                    "latency_p50": _pct([r["latency_s"] for r in rs], 50), "latency_p95": _pct([r["latency_s"] for r in rs], 95)}
    absent = [r for r in rows if not r["planted"] and r.get("abstained") is not None]
    if absent:
        out["absent"] = {"n": len(absent), "false_answer": stats.summarize([float(not r["abstained"]) for r in absent], seed=seed),
                         "latency_p50": _pct([r["latency_s"] for r in absent], 50)}
    allr = [r["latency_s"] for r in rows]
    out["all"] = {"n": len(rows), "latency_p50": _pct(allr, 50), "latency_p95": _pct(allr, 95)}
    return out


def _pct(xs: list[float], q: int) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))], 3)


def paired_rows(rows_a: list[dict], rows_b: list[dict], seed: int = 0) -> dict:
    """B − A per family (and all planted questions) over the questions both answered, by (size, world, family):
    paired 95% interval and won/tied/lost, as the scorecard compares."""
    from ..eval import stats

    def keyed(rows):
        return {(r["size"], r["world"], r["family"]): r["score"] for r in rows if r["planted"] and r.get("score") is not None}

    a, b = keyed(rows_a), keyed(rows_b)
    out = {}
    for fam in [*dict.fromkeys(k[2] for k in a), "all"]:
        sel = lambda d: {"-".join(map(str, k)): v for k, v in d.items() if fam in ("all", k[2])}  # noqa: E731
        out[fam] = stats.paired(sel(a), sel(b), seed=seed)
    return out
