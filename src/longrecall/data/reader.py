"""`longrecall data reader`: SFT chats in the exact prompt a `memory ask` reader sees, to train a memory reader.

    longrecall data reader --worlds 150 --output-dir runs/data/reader
    longrecall train longlora --config configs/longlora-reader-cpu.yaml --set sft=runs/data/reader/train.jsonl

Each world is a small memory (procedural prose only: the real-text docs stay unseen for evaluation) holding one
task of each family, in the *training* phrasings (`--phrasing grammar` by default), and one question about
something it does not hold. Every question goes through `Memory.ask(generate=False)`, the retrieval and focus of
`memory ask`, and the record is the reader's prompt (memory.api.SYSTEM + build_prompt) with the gold answer:
- a planted question whose evidence holds every needle: the answer (a chain as its hops, "A -> B -> C");
- a planted question whose evidence misses a needle: skipped (training a reader to answer from notes that lack the
  answer would teach it to invent);
- a question about something absent that reaches the reader: an answer that says the notes do not hold it.
Seeded: the same flags give byte-identical files. The benchmark's worlds (memory bench) use held-out phrasings,
other seeds and real text, so none of its questions is trained on.
"""
from __future__ import annotations

import argparse
import random
import tempfile
from collections import Counter
from pathlib import Path

from ..errors import NotFound, UserError
from ..io import write_json, write_jsonl

FAMILIES = ("single", "multikey", "all_needles", "chain", "nonliteral")
ABSENT = ("The notes do not say.", "It is not in the notes.", "The notes do not mention {x}.")


def gold(item, context: str, rng: random.Random) -> str:
    """The reader's answer for a planted item: values in the order the notes give them, chains hop by hop."""
    s = item.sample
    if s["metric"] == "chain" and s.get("chain"):
        return " -> ".join(s["chain"]) if rng.random() < 0.7 else s["answers"][0]
    if len(s["answers"]) > 1:
        order = sorted(s["answers"], key=lambda a: (context.find(a) if a in context else len(context)))
        return rng.choice([", ".join(order), "\n".join(f"- {a}" for a in order)])
    a = s["answers"][0]
    return rng.choice([a, f"The answer is {a}.", f"It is {a}."])


def world_records(w: int, seed: int, tokens: int, phrasing: str, work: Path, families=FAMILIES) -> tuple[list[dict], Counter]:
    from ..memory import e2e
    from ..memory.api import SYSTEM, Memory, build_prompt
    from ..niah.haystacks import prose_text
    from ..niah.scoring import score

    rng = random.Random(f"reader-{seed}-{w}")
    text = prose_text(max(200, tokens // 12), 900_000 + seed * 10_000 + w)  # ~12 tokens a sentence
    world = e2e.make_world(text, w, 500_000 + seed, families=tuple(families), phrasing=phrasing)
    db = work / f"reader-{w}.db"
    mem = Memory(db, embedder=None)
    records, counts = [], Counter()
    try:
        mem.add_text(world.text, source=f"world-{w}")
        for it in world.items:
            q = it.sample["question"]
            try:
                res = mem.ask(q, generate=False, strategy="auto", focus=True)
            except NotFound:
                counts["not asked (nothing in memory)"] += 1
                continue
            if it.planted:
                if not e2e.account(it, res.context, None, 0.0)["evidence_complete"]:
                    counts["skipped (evidence incomplete)"] += 1
                    continue
                answer = gold(it, res.context, rng)
                assert score(it.sample, answer) == 1.0, (it.family, answer)
                kind = it.family
            else:
                named = next((n["key"] for n in it.sample["needles"] if n.get("key")), "that")
                answer, kind = rng.choice(ABSENT).format(x=named), "absent"
            counts[kind] += 1
            records.append({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": build_prompt(q, res.context)},
                                         {"role": "assistant", "content": answer}],
                            "meta": {"id": f"reader-{seed}-{w}-{len(records)}", "task": kind, "world": w, "phrasing": phrasing}})
    finally:
        mem.close()
        for f in work.glob(f"reader-{w}.db*"):
            f.unlink()
    return records, counts


def parse_families(text: str) -> tuple[str, ...]:
    """'single,chain,chain' -> the families planted in each world (a family named twice is planted twice)."""
    fams = tuple(f.strip() for f in text.split(",") if f.strip())
    bad = [f for f in fams if f not in FAMILIES]
    if not fams or bad:
        raise UserError(f"--families {text}: name families from {', '.join(FAMILIES)} (repeat one to plant it twice)")
    return fams


def rounds(families) -> list[tuple[str, ...]]:
    """('a', 'b', 'b') -> [('a', 'b'), ('b',)]: one memory per round, so that two tasks of one family never compete
    for the same names and places (two non-literal tasks draw their places from the same 20)."""
    out: list[list[str]] = []
    for f in families:
        k = next((i for i, r in enumerate(out) if f not in r), len(out))
        if k == len(out):
            out.append([])
        out[k].append(f)
    return [tuple(r) for r in out]


def build(worlds: int, seed: int = 0, tokens: int = 50_000, phrasing: str = "grammar", progress: bool = True,
          families=FAMILIES) -> tuple[list[dict], Counter]:
    from tqdm.auto import tqdm

    if worlds < 1 or tokens < 5_000:
        raise UserError(f"--worlds {worlds} / --world-tokens {tokens}: ask for at least 1 world of 5000+ tokens")
    if phrasing not in ("train", "grammar"):
        raise UserError(f"--phrasing {phrasing}: use train or grammar (the held-out phrasings are for evaluation)")
    records, counts = [], Counter()
    with tempfile.TemporaryDirectory(prefix="reader-data-") as tmp:
        for w in tqdm(range(worlds), desc="reader worlds", unit="world", disable=not progress):
            for k, fams in enumerate(rounds(families)):  # a family named twice goes into a second memory
                r, c = world_records(w + k * 1_000_000, seed, tokens, phrasing, Path(tmp), fams)
                records += r
                counts += c
    return records, counts


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--worlds", type=int, default=150, help="small memories, each with one question per family + one absent")
    p.add_argument("--world-tokens", type=int, default=50_000, help="size of each world's memory in tokens (about)")
    p.add_argument("--phrasing", default="grammar", choices=["train", "grammar"], help="training phrasing pool")
    p.add_argument("--families", default=",".join(FAMILIES),
                   help="families planted in each world, comma-separated; a family named twice gets a second small memory (e.g. ...,chain,chain)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", required=True, help="folder for train.jsonl and manifest.json")


def main(a: argparse.Namespace) -> int:
    families = parse_families(a.families)
    records, counts = build(a.worlds, a.seed, a.world_tokens, a.phrasing, families=families)
    out = Path(a.output_dir)
    write_jsonl(out / "train.jsonl", records)
    write_json(out / "manifest.json", {"worlds": a.worlds, "world_tokens": a.world_tokens, "phrasing": a.phrasing,
                                       "families": list(families), "seed": a.seed, "records": len(records), "counts": dict(sorted(counts.items()))})
    print(f"wrote {len(records)} reader chats to {out / 'train.jsonl'}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0
