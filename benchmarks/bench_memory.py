"""Long-term memory at scale: ingest throughput, store size, retrieval latency, embedding rate, all-needles recall.

    OMP_NUM_THREADS=1 python benchmarks/bench_memory.py --tokens 1000000      # default 10M tokens

Ingest streams procedural prose (niah.haystacks.prose_text) into a SQLite store (FTS5 only: vectors are optional
and measured separately, since MiniLM on CPU embeds ~2k tokens/s/core). Then 20 retrieval-only asks (Memory.ask,
generate=False) on that store, and recall on a separate --recall-tokens memory with 20 planted needles, 20
distractor needles and four 3-hop chains.
"""
from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

from longrecall.memory.api import Memory
from longrecall.memory.bench import chars_per_token
from longrecall.memory.store import SQLiteStore

PIECE_SENTENCES = 4000  # ~60k tokens of prose per piece


def prose(n_sentences: int, seed: int) -> str:
    try:
        from longrecall.niah.haystacks import prose_text
    except ImportError:  # the generator is optional here: a plain procedural stand-in
        rng = random.Random(seed)
        words = "the old fisherman a quiet student repaired painted a wooden bridge near the harbour at dawn slowly".split()
        return " ".join(" ".join(rng.choice(words) for _ in range(14)).capitalize() + "." for _ in range(n_sentences))
    return prose_text(n_sentences, seed)


def make_pieces(n_tokens: int, cpt: float, seed: int) -> list[str]:
    pieces, chars, i = [], 0, 0
    while chars < n_tokens * cpt:
        p = prose(PIECE_SENTENCES, seed * 100_000 + i)
        pieces.append(p)
        chars, i = chars + len(p) + 1, i + 1
    return pieces


def plant(pieces: list[str], sentences: list[str], rng: random.Random) -> None:
    """Insert each sentence at a random sentence boundary of a random piece (in place)."""
    for s in sentences:
        i = rng.randrange(len(pieces))
        cuts = [m.end() for m in re.finditer(r"\. ", pieces[i])]
        j = rng.choice(cuts)
        pieces[i] = pieces[i][:j] + s + " " + pieces[i][j:]


def needles_and_chains(rng: random.Random):
    key, other_keys = "brave-otter", ["calm-heron", "swift-badger", "quiet-lynx", "bold-raven"]
    values = [str(rng.randint(1_000_000, 9_999_999)) for _ in range(20)]
    lucky = [str(rng.randint(1_000_000, 9_999_999)) for _ in range(20)]
    sents = [f"One of the special magic numbers for {key} is: {v}." for v in values]
    sents += [f"One of the special magic numbers for {rng.choice(other_keys)} is: {rng.randint(1_000_000, 9_999_999)}." for _ in range(20)]
    sents += [f"The lucky number for {rng.choice(other_keys)}-{i} is {v}." for i, v in enumerate(lucky)]
    sents += [f"The secret code for {rng.choice(other_keys)}-x{i} is {rng.randint(1_000_000, 9_999_999)}." for i in range(20)]
    chains = []
    for name, item in (("Ottoline", "violin"), ("Bartholomew", "violin"), ("Ottoline", "camera"), ("Seraphina", "violin")):
        locker, room, building = str(rng.randint(1000, 9999)), f"K{rng.randint(100, 999)}", rng.choice(["Elmstead Hall", "Northgate Tower", "Ashcombe Library", "Whitford Annex"])
        facts = [f"{name} keeps the {item} in locker {locker}.", f"Locker {locker} is in room {room}.", f"Room {room} is located in {building}."]
        chains.append(facts)
        sents += facts
    return key, values, lucky, sents, chains


def ingest(path: Path, pieces: list[str]) -> tuple[float, dict]:
    store = SQLiteStore(path)
    t0 = time.perf_counter()
    store.add_stream(iter(pieces), source="bench")
    dt = time.perf_counter() - t0
    st = store.stats()
    store.close()  # the last close checkpoints the WAL into the file: measure the file then
    st["bytes"] = sum(f.stat().st_size for f in (path, Path(f"{path}-wal")) if f.exists())
    return dt, st


def asks(mem: Memory, questions: list[str], **kw) -> list[float]:
    out = []
    for q in questions:
        t0 = time.perf_counter()
        mem.ask(q, generate=False, **kw)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=10_000_000)
    ap.add_argument("--recall-tokens", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--embed-chunks", type=int, default=128, help="chunks embedded to time MiniLM (0: skip)")
    ap.add_argument("--dir", default=None, help="where the stores go (default: a temp dir, deleted)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="bench-memory-") if args.dir is None else None
    out = Path(args.dir or tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    rows = []

    cpt = chars_per_token(prose(2000, 0))
    t0 = time.perf_counter()
    pieces = make_pieces(args.tokens, cpt, seed=1)
    gen_s = time.perf_counter() - t0
    key, values, lucky, planted, chains = needles_and_chains(rng)
    plant(pieces, planted, rng)
    n_chars = sum(len(p) + 1 for p in pieces)
    dt, st = ingest(out / "big.db", pieces)
    del pieces
    tokens = n_chars / cpt
    rows += [
        ("tokens ingested (SmolLM2 tokens, est.)", f"{tokens / 1e6:.2f}M ({n_chars / 1e6:.1f}M chars, {cpt:.2f} chars/token)"),
        ("prose generation (not in ingest)", f"{gen_s:.1f} s"),
        ("ingest time / throughput", f"{dt:.1f} s = {tokens / dt / 1e3:.0f}k tokens/s = {n_chars / dt / 1e6:.2f} MB/s"),
        ("chunks / store size", f"{st['chunks']} chunks, {st['bytes'] / 1e6:.1f} MB ({st['bytes'] / n_chars:.2f} bytes per text byte)"),
    ]

    mem = Memory(store=SQLiteStore(out / "big.db"), embedder=None)
    shapes = [
        "What are all the special magic numbers for brave-otter?",
        "In which building is Ottoline's violin kept?",
        "What did the old fisherman repair near the harbour?",
        "List every lucky number mentioned in the text.",
        "Which room holds locker {l}?",
    ]
    qs = [shapes[i % len(shapes)].format(l=chains[i % 4][0].split()[-1].rstrip(".")) for i in range(args.queries)]
    lat = asks(mem, qs)
    bm = []
    for q in qs:
        t1 = time.perf_counter()
        mem.store.search_bm25(q, 6)
        bm.append(time.perf_counter() - t1)
    rows += [
        (f"ask latency, retrieval only (median / max of {len(qs)})", f"{statistics.median(lat) * 1e3:.0f} / {max(lat) * 1e3:.0f} ms"),
        ("plain FTS5 top-6 search (median)", f"{statistics.median(bm) * 1e3:.1f} ms"),
    ]
    ctx = mem.ask(shapes[0], generate=False).context
    rows.append((f"all-needles recall at {tokens / 1e6:.1f}M (20 needles)", f"{sum(v in ctx for v in values)}/20"))

    if args.embed_chunks:
        from longrecall.rag.retrievers import load_embedder

        texts = [c.text for c, _ in zip(mem.store.chunks(), range(args.embed_chunks))]
        t1 = time.perf_counter()
        embed = load_embedder()
        load_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        embed(texts)
        rate = len(texts) / (time.perf_counter() - t1)
        tok_rate = rate * sum(map(len, texts)) / len(texts) / cpt
        rows += [
            ("MiniLM load / embed rate (1 thread)", f"{load_s:.1f} s / {rate:.1f} chunks/s = {tok_rate:.0f} tokens/s"),
            (f"projected time to embed {tokens / 1e6:.1f}M tokens", f"{tokens / tok_rate / 3600:.2f} h"),
        ]
    mem.close()

    # Recall on a --recall-tokens memory (the default 1M), retrieval only.
    pieces = make_pieces(args.recall_tokens, cpt, seed=2)
    key, values, lucky, planted, chains = needles_and_chains(random.Random(1))
    plant(pieces, planted, random.Random(2))
    ingest(out / "recall.db", pieces)
    mem = Memory(store=SQLiteStore(out / "recall.db"), embedder=None)
    rt = args.recall_tokens / 1e6
    ctx = mem.ask(f"What are all the special magic numbers for {key}?", generate=False).context
    rows.append((f"all-needles recall at {rt:.1f}M, keyed (20 + 20 distractors)", f"{sum(v in ctx for v in values)}/20, {ctx.count('special magic numbers for') - sum(v in ctx for v in values)} distractors kept"))
    ctx = mem.ask("List every lucky number mentioned in the text.", generate=False).context
    rows.append((f"all-needles recall at {rt:.1f}M, by name (20 + 20 other names)", f"{sum(v in ctx for v in lucky)}/20, {ctx.count('secret code')} distractors kept"))
    for strategy in ("topk", "auto"):
        hits = 0
        for facts in chains:
            name, item = facts[0].split()[0], facts[0].split(" the ")[1].split(" in ")[0]
            ctx = mem.ask(f"In which building is {name}'s {item} kept?", generate=False, strategy=strategy).context
            hits += all(f in ctx for f in facts)
        rows.append((f"3-hop chains fully retrieved at {rt:.1f}M, {strategy}", f"{hits}/4"))
    mem.close()

    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  value")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
