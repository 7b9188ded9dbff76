"""`longrecall lift compare`: two `lift eval` folders over the same questions, paired by question.

    longrecall lift compare runs/lift/a/eval runs/lift/b/eval --output-dir runs/lift/b/compare-a

For each measure (recall with no context, with the truncated context), B − A in points with its seeded 95% paired
bootstrap interval and won / tied / lost; a difference is claimed only when the interval excludes 0. Questions are
paired by their text, so two evals of different inputs share none and are refused.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..eval.stats import paired
from ..io import atomic_open, write_json

QUESTIONS = "questions.json"
MEASURES = {"no context": "adapter_none", "truncated context": "adapter_truncated"}


def scores(folder: str | Path) -> dict[str, dict[str, float]]:
    """{measure: {question: 1.0 | 0.0}} of one eval folder."""
    path = Path(folder) / QUESTIONS
    if not path.is_file():
        raise UserError(f"{path} not found: pass a folder written by `longrecall lift eval --output-dir`")
    rows = json.loads(path.read_text())
    return {m: {r["question"]: float(r[key]["correct"]) for r in rows if key in r} for m, key in MEASURES.items()}


def compare(a: str | Path, b: str | Path) -> dict:
    sa, sb = scores(a), scores(b)
    if not sa["no context"].keys() & sb["no context"].keys():
        raise UserError(f"{a} and {b} share no question: compare two evals of the same input")
    out = {"a": str(a), "b": str(b), "measures": {}}
    for m in MEASURES:
        d = paired(sa[m], sb[m])
        if d:
            both = sa[m].keys() & sb[m].keys()
            out["measures"][m] = {"a": 100 * sum(sa[m][q] for q in both) / len(both), "b": 100 * sum(sb[m][q] for q in both) / len(both), **d}
    return out


def markdown(r: dict) -> str:
    lines = [f"# LIFT recall, paired by question: B = {r['b']}, A = {r['a']}", "",
             "| measure | n | A | B | B − A (95% CI) | won / tied / lost | claimed |", "|---|---|---|---|---|---|---|"]
    for m, d in r["measures"].items():
        lines.append(f"| {m} | {d['n']} | {d['a']:.0f} | {d['b']:.0f} | {d['mean']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] | "
                     f"{d['won']} / {d['tied']} / {d['lost']} | {'yes' if d['significant'] else 'no: the interval holds 0'} |")
    return "\n".join(lines) + "\n"


def add_arguments(p) -> None:
    p.add_argument("a", help="the baseline's `lift eval` folder")
    p.add_argument("b", help="the variant's `lift eval` folder (same input)")
    p.add_argument("--output-dir", default=None, help="also write compare.md and compare.json here")


def main(args) -> int:
    r = compare(args.a, args.b)
    text = markdown(r)
    print(text, end="")
    if args.output_dir:
        write_json(Path(args.output_dir) / "compare.json", r)
        with atomic_open(Path(args.output_dir) / "compare.md") as fh:
            fh.write(text)
    return 0
