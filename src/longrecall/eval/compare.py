"""Runs side by side: per-family tables (rows = runs, columns = lengths), effective lengths, delta heatmaps vs the first run.

    longrecall eval compare runs/base runs/finetuned --names base,finetuned --output-dir runs/compare
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Sequence

from ..errors import UserError
from ..io import atomic_open, write_json
from .report import (RULER_THRESHOLD, average_by_length, cell_table, effective_length, families_of, family_scores, fmt,
                     load_run, markdown_table)


def delta_table(rows_a: list[dict], rows_b: list[dict], task: str) -> dict[float, dict[int, float | None]]:
    """{depth: {length: B − A}} in points over the cells both runs have; None where either has no score."""
    a, b = cell_table(rows_a, task), cell_table(rows_b, task)
    out: dict[float, dict[int, float | None]] = {}
    for depth in sorted(set(a) & set(b)):
        for length in sorted(set(a[depth]) & set(b[depth])):
            va, vb = a[depth][length], b[depth][length]
            out.setdefault(depth, {})[length] = None if va is None or vb is None else vb - va
    return out


def paired_delta(rows_a: list[dict], rows_b: list[dict], task: str, resamples: int = 2000, seed: int = 0) -> dict | None:
    """B − A over the samples both runs scored (same sample id: same prompt), in points: mean, a seeded 95% paired
    bootstrap interval, and how many samples B won, tied and lost. None when no sample is shared."""
    import random

    def by_id(rows):
        return {r["id"]: float(r["score"]) for r in rows if r["task"] == task and "id" in r and r.get("score") is not None}

    a, b = by_id(rows_a), by_id(rows_b)
    diffs = [100.0 * (b[i] - a[i]) for i in sorted(a.keys() & b.keys())]
    if not diffs:
        return None
    rng, n = random.Random(seed), len(diffs)
    means = sorted(sum(rng.choice(diffs) for _ in range(n)) / n for _ in range(resamples))
    return {"n": n, "mean": sum(diffs) / n, "ci95": [means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]],
            "wins": sum(d > 0 for d in diffs), "ties": sum(d == 0 for d in diffs), "losses": sum(d < 0 for d in diffs)}


def compare_runs(runs: Sequence[list[dict]], names: Sequence[str], threshold: float = RULER_THRESHOLD) -> dict:
    """Pure comparison data: per family {run: {length: score}}, averages, effective length per run."""
    if len(runs) != len(names):
        raise UserError(f"{len(runs)} runs but {len(names)} names: pass one name per run in --names")
    fams: list[str] = []
    for rows in runs:
        fams += [t for t in families_of(rows) if t not in fams]
    per_run = [family_scores(rows) for rows in runs]
    return {
        "names": list(names),
        "threshold": threshold,
        "effective_length": {n: effective_length(rows, threshold) for n, rows in zip(names, runs)},
        "families": {t: {n: {str(L): v for L, v in fs.get(t, {}).items()} for n, fs in zip(names, per_run)} for t in fams},
        "average": {n: {str(L): v for L, v in average_by_length(rows).items()} for n, rows in zip(names, runs)},
        "paired": {n: {t: paired_delta(runs[0], rows, t) for t in fams} for n, rows in zip(names[1:], runs[1:])},
    }


def write_comparison(out_dir: str | os.PathLike, runs: Sequence[list[dict]], names: Sequence[str],
                     threshold: float = RULER_THRESHOLD) -> dict:
    """report.md + comparison.json + delta heatmaps (each run − the first) + an average-by-length chart."""
    from .plots import heatmap, line_chart

    out = Path(out_dir)
    if len(set(names)) != len(names):
        raise UserError(f"run names {list(names)} repeat: pass distinct --names")
    data = compare_runs(runs, names, threshold)
    base_name, base_rows = names[0], runs[0]
    lines = [f"# Comparison: {', '.join(names)}", "", "## Effective length", "",
             markdown_table(["run", f"effective length (> {threshold:g}%)"], [[n, str(v)] for n, v in data["effective_length"].items()]), ""]
    series = {}
    for title, table in [("average", data["average"])] + [(t, per) for t, per in data["families"].items()]:
        lengths = sorted({int(L) for per in table.values() for L in per})
        body = [[n] + [fmt(table[n].get(str(L))) for L in lengths] for n in names]
        lines += [f"## {title}", "", markdown_table(["run"] + [str(L) for L in lengths], body), ""]
        if title == "average":
            series = {n: {int(L): v for L, v in table[n].items()} for n in names}
            line_chart(series, out / "average_by_length.png", title="average score by length", threshold=threshold, ylim=(-2, 102))
            lines += ["![average by length](average_by_length.png)", ""]
            continue
        for name, rows in zip(names[1:], runs[1:]):
            delta = delta_table(base_rows, rows, title)
            if not delta:
                continue
            img = f"delta_{_slug(title)}_{_slug(name)}_minus_{_slug(base_name)}.png"
            heatmap(delta, out / img, title=f"{title}: {name} − {base_name} (points)", vmin=-100, vmax=100, signed=True)
            lines += [f"![{title} delta]({img})", ""]
            data.setdefault("images", []).append(img)
    pairs = [[f"{n} − {base_name}", t, str(d["n"]), f"{d['mean']:+.1f}", f"[{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]",
              f"{d['wins']}/{d['ties']}/{d['losses']}"] for n, per in data["paired"].items() for t, d in per.items() if d]
    if pairs:
        lines += ["## Paired differences", "", "The same prompts scored by both runs (matched by sample id), in points; "
                  "an interval that excludes 0 is a difference the samples support.", "",
                  markdown_table(["runs", "family", "samples", "mean", "95% bootstrap", "won/tied/lost"], pairs), ""]
    write_json(out / "comparison.json", data)
    with atomic_open(out / "report.md") as fh:
        fh.write("\n".join(lines))
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders (each with results.jsonl) or results.jsonl files; the first is the baseline")
    parser.add_argument("--output-dir", required=True, help="where report.md, comparison.json and the PNGs go")
    parser.add_argument("--names", default=None, help="comma-separated display names, one per run (default: folder names)")
    parser.add_argument("--threshold", type=float, default=RULER_THRESHOLD, help="effective-length threshold in percent")


def main(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        raise UserError("compare needs at least two runs: pass RUN_A RUN_B")
    names = args.names.split(",") if args.names else [_default_name(r) for r in args.runs]
    runs = [load_run(r) for r in args.runs]
    data = write_comparison(args.output_dir, runs, names, args.threshold)
    for n, L in data["effective_length"].items():
        print(f"{n}: effective length {L}")
    print(f"wrote {Path(args.output_dir) / 'report.md'}")
    return 0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def _default_name(path: str) -> str:
    p = Path(path)
    return (p.parent.name if p.is_file() else p.name) or str(p)
