"""`longrecall memory bench`: what `longrecall memory ask` answers at 1M-10M tokens, per family, every miss explained.

    longrecall memory bench --sizes 1000000:50,10000000:10 --rows base:topk:10,tuned:topk:10,tuned:auto \\
        --tuned runs/cpu/train/adapter --output-dir runs/memory-e2e        (also benchmarks/bench_memory_e2e.py)

Each world is one memory of the given size (procedural prose and the installed packages' docs, half each) holding
one held-out task per family (single needle, all needles of a kind (8-64), a 2-4 hop chain, a non-literal needle)
planted far apart, and one question about something it does not hold. Every question goes through Memory.ask, the
code path of `memory ask` (retrieval by strategy, the prompt, the reader). A row is READER:STRATEGY[:WORLDS]
(reader: base, tuned, reader (the shipped default reader, reader-v1) or retrieval, the last asking without a reader to measure
retrieval alone; WORLDS caps how
many of the size's worlds that row reads). Results append to results.jsonl per world and row: a rerun resumes.
Writes summary.json and README.md (per family x size: score with 95% interval, evidence recall, misses by hop and
by cause, latency p50/p95; the false-answer rate on absent questions).
"""
from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

from ..errors import UserError
from ..io import append_jsonl, atomic_open, write_json
from . import e2e
from .api import Memory, _positive
from .listing import GROUP, answer_all


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [(int(float(a)), int(b)) for a, b in (x.split(":") for x in text.split(","))]


def parse_rows(text: str) -> list[tuple[str, str, int | None]]:
    out = []
    for x in text.split(","):
        parts = x.split(":")
        out.append((parts[0], parts[1], int(parts[2]) if len(parts) > 2 else None))
    return out


def chars_per_token(sample: str) -> float:
    from ..models import load_tokenizer

    return len(sample) / len(load_tokenizer("default")(sample, add_special_tokens=False)["input_ids"])


def table(summary: dict, sizes: list[int]) -> list[str]:
    lines = ["| row | size | family | n | score (95% CI) | evidence complete (95% CI) | misses: where and who | p50 / p95 s |",
             "|---|---|---|---|---|---|---|---|"]
    for key, fams in summary.items():
        row, size = key.rsplit("@", 1)
        for fam, s in fams.items():
            if fam in ("all", "absent"):
                continue
            sc = s["score"]
            score = "n/a" if sc is None else f"{sc['mean']:.0f} [{sc['lo']:.0f}, {sc['hi']:.0f}]"
            ev = s["evidence_complete"]
            lost = ", ".join(f"{k} {v}" for k, v in sorted(s["lost"].items())) or "none"
            lines.append(f"| {row} | {int(size) / 1e6:g}M | {fam} | {s['n']} | {score} | {ev['mean']:.0f} [{ev['lo']:.0f}, {ev['hi']:.0f}] "
                         f"| {lost} | {s['latency_p50']} / {s['latency_p95']} |")
    return lines


def absent_lines(summary: dict) -> list[str]:
    out = ["| row | size | absent questions | false answers (95% CI) |", "|---|---|---|---|"]
    for key, fams in summary.items():
        if "absent" in fams:
            row, size = key.rsplit("@", 1)
            f = fams["absent"]["false_answer"]
            out.append(f"| {row} | {int(size) / 1e6:g}M | {fams['absent']['n']} | {f['mean']:.0f}% [{f['lo']:.0f}, {f['hi']:.0f}] |")
    return out


def capped(gen, limit: int):
    """The reader with each answer capped at `limit` tokens (the family's budget), batches (`.many`) too."""
    def one(prompt, cap=None):
        return gen(prompt, cap=min(cap or limit, limit))

    one.many = lambda prompts, cap=None: answer_all(gen, prompts, min(cap or limit, limit))
    return one


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--sizes", default="1000000:50,10000000:10", help="TOKENS:WORLDS,... (one question per family a world)")
    ap.add_argument("--rows", default="retrieval:auto,retrieval:topk,base:topk:10,tuned:topk:10,tuned:auto")
    ap.add_argument("--tuned", default=None, help="the tuned reader: an adapter or model folder (rows named tuned)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=384,
                    help="the reader's answer cap; each answer also stops at its family's budget (64 numbers need ~350)")
    ap.add_argument("--output-dir", required=True)
    ap.add_argument("--read-group", type=_positive("--read-group", allow_zero=True), default=GROUP, metavar="N",
                    help=f"every-X evidence read N sentences at a time, answers merged (default {GROUP}; 0: all at once)")
    ap.add_argument("--order", choices=("document", "hops"), default="document",
                    help="the reader sees the evidence in document order or in the order multi-hop retrieval reached it")
    ap.add_argument("--no-focus", action="store_true", help="show readers whole retrieved chunks (the ablation of memory.focus)")
    ap.add_argument("--no-closest", action="store_true", help="show one-hop readers every evidence sentence (the ablation of memory.closest)")
    ap.add_argument("--no-read-on", action="store_true", help="keep each first answer, middle link or not (the ablation of memory.onward)")
    ap.add_argument("--work-dir", default=None, help="where the stores go (default: a temp dir, deleted)")
    ap.add_argument("--compare", nargs=2, metavar=("DIR:ROW", "DIR:ROW"), default=None,
                    help="compare two rows of finished runs, paired by world and family (B − A); writes compare.json/.md")


def compare(specs: list[str], out: Path) -> int:
    """`--compare A_DIR:ROW B_DIR:ROW`: B − A per family, paired by (size, world, family)."""
    picked = []
    for spec in specs:
        folder, _, row = spec.partition(":")
        f = Path(folder) / "results.jsonl"
        if not folder or not f.exists():
            raise UserError(f"--compare {spec}: write it as DIR:ROW with DIR holding a bench's results.jsonl (e.g. runs/memory:tuned:auto)")
        rows = [r for r in map(json.loads, f.read_text().splitlines()) if r.get("row") == row]
        if not rows:
            raise UserError(f"--compare {spec}: {f} has no row '{row}': use one of its rows (e.g. tuned:auto)")
        picked.append(rows)
    result = e2e.paired_rows(*picked)
    write_json(out / "compare.json", {"a": specs[0], "b": specs[1], "delta": result})
    lines = [f"# {specs[1]} − {specs[0]}", "", "| family | n | delta (points, 95% CI) | won / tied / lost |", "|---|---|---|---|"]
    for fam, d in result.items():
        if d:
            lines.append(f"| {fam} | {d['n']} | {d['mean']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] | {d['won']} / {d['tied']} / {d['lost']} |")
    with atomic_open(out / "compare.md") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(args) -> int:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if getattr(args, "compare", None):
        return compare(args.compare, out)
    try:
        rows, sizes_ = parse_rows(args.rows), parse_sizes(args.sizes)
    except (ValueError, IndexError):
        raise UserError(f"--sizes {args.sizes!r} / --rows {args.rows!r}: write sizes as TOKENS:WORLDS,... and rows as "
                        "READER:STRATEGY[:WORLDS],... (e.g. --sizes 1000000:50 --rows tuned:auto,base:topk:10)") from None
    bad = [f"{n}:{s}" for n, s, _ in rows if n not in ("base", "tuned", "reader", "retrieval") or s not in ("auto", "topk", "multihop", "findall")]
    if bad:
        raise UserError(f"--rows {', '.join(bad)}: a row is READER:STRATEGY with reader base, tuned, reader (the shipped "
                        "reader-v1) or retrieval and strategy auto, topk, multihop or findall")
    if any(r == "tuned" for r, _, _ in rows) and not args.tuned:
        raise UserError("rows name the tuned reader: pass --tuned ADAPTER_OR_MODEL_FOLDER")
    from tqdm.auto import tqdm

    from .reader import SHIPPED, load_reader

    readers: dict = {}

    def reader(name: str):
        if name == "retrieval":
            return None
        if name not in readers:
            spec = {"base": "base", "reader": SHIPPED}.get(name, args.tuned)
            readers[name] = load_reader(spec, max_new_tokens=args.max_new_tokens)
        return readers[name]

    from ..rag.retrievers import load_embedder

    shared = functools.cache(load_embedder)  # all-MiniLM-L6-v2, loaded once for every world, when a reader first needs it

    def ranker():  # memory.closest's ranker (None: the ablation)
        return None if getattr(args, "no_closest", False) else (lambda texts: shared()(texts))

    results = out / "results.jsonl"
    done = set()
    if results.exists():
        done = {(r["size"], r["world"], r["row"]) for r in map(json.loads, results.read_text().splitlines()) if r.get("world") is not None}
    tmp = tempfile.TemporaryDirectory(prefix="memory-e2e-") if args.work_dir is None else None
    work = Path(args.work_dir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    cpt = chars_per_token(e2e.base_text(40_000, args.seed))
    for size, worlds in sizes_:
        base = None
        for w in tqdm(range(worlds), desc=f"{size / 1e6:g}M", unit="world"):
            todo = [(n, s, c) for n, s, c in rows if (c is None or w < c) and (size, w, f"{n}:{s}") not in done]
            if not todo:
                continue
            if base is None:
                base = e2e.base_text(int(size * cpt), args.seed + size)
            world = e2e.make_world(base, w, args.seed + size)
            db = work / f"{size}-{w}.db"
            for f in work.glob(f"{size}-{w}.db*"):
                f.unlink()
            t0 = time.perf_counter()
            mem = Memory(db, embedder=None, ranker=ranker())
            mem.add_text(world.text, source=f"world-{w}")
            ingest_s = time.perf_counter() - t0
            try:
                for name, strategy, _ in todo:
                    gen, asked = reader(name), []
                    for it in world.items:  # each answer capped at its family's budget, as the scorecard does
                        mem._generator = gen and capped(gen, min(it.sample["answer_budget"], args.max_new_tokens))
                        asked.append(e2e.ask_item(mem, it, strategy, gen is not None, focus=not args.no_focus, read_group=args.read_group or None,
                                                  order=args.order, read_on=not getattr(args, "no_read_on", False),
                                                  closest=not getattr(args, "no_closest", False)))
                    for r in asked:
                        r.update(size=size, world=w, row=f"{name}:{strategy}", ingest_s=round(ingest_s, 2))
                        append_jsonl(results, r)
            finally:
                mem.close()
                for f in work.glob(f"{size}-{w}.db*"):
                    f.unlink()
    all_rows = [json.loads(x) for x in results.read_text().splitlines() if x.strip()]
    summary = {}
    for key in dict.fromkeys(f"{r['row']}@{r['size']}" for r in all_rows):
        row, size = key.rsplit("@", 1)
        summary[key] = e2e.summarize([r for r in all_rows if r["row"] == row and r["size"] == int(size)], seed=args.seed)
    write_json(out / "summary.json", {"tuned": args.tuned, "sizes": args.sizes, "rows": args.rows, "summary": summary})
    sizes = sorted({r["size"] for r in all_rows})
    cmd = " ".join(["longrecall memory bench", f"--sizes {args.sizes}", f"--rows {args.rows}"] + (
        [f"--tuned {args.tuned}"] if args.tuned else []))
    md = ["# Memory end to end", "", f"`{cmd}`", "", *table(summary, sizes), "", *absent_lines(summary), ""]
    with atomic_open(out / "README.md") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    return 0
