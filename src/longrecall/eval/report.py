"""Aggregate NIAH grid rows (scores per family, length and depth; effective length) and write summary.json + report.md.

    longrecall eval report runs/niah      # re-draws a run folder's report from its results.jsonl

Rows are the lines of a run's results.jsonl: task, length, depth, seed, score in [0, 1] (None when the cell was not
asked, e.g. beyond the model's positions). Every aggregate here is in percent.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Iterable, Sequence

from ..errors import UserError
from ..io import atomic_open, read_jsonl, write_json

RULER_THRESHOLD = 85.6  # Llama-2-7B-chat's RULER average at 4k: the bar RULER's "effective length" uses


def _scored(rows: Iterable[dict]) -> list[dict]:
    return [r for r in rows if r.get("score") is not None]


def lengths_of(rows: Iterable[dict]) -> list[int]:
    return sorted({int(r["length"]) for r in rows})


def families_of(rows: Iterable[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.setdefault(r["task"], None)
    return list(seen)


def cell_table(rows: Iterable[dict], task: str) -> dict[float, dict[int, float | None]]:
    """{depth: {length: mean score %}} for one family; None where no cell was scored (e.g. beyond positions)."""
    rows = [r for r in rows if r["task"] == task]
    acc: dict[tuple[float, int], list[float]] = defaultdict(list)
    for r in rows:
        key = (float(r["depth"]), int(r["length"]))
        acc.setdefault(key, [])
        if r.get("score") is not None:
            acc[key].append(100.0 * float(r["score"]))
    table: dict[float, dict[int, float | None]] = {}
    for (depth, length), values in sorted(acc.items()):
        table.setdefault(depth, {})[length] = mean(values) if values else None
    return table


def family_scores(rows: Iterable[dict]) -> dict[str, dict[int, float | None]]:
    """{family: {length: mean % over its depths and seeds}}."""
    rows = list(rows)
    out: dict[str, dict[int, float | None]] = {}
    for task in families_of(rows):
        mine = [r for r in rows if r["task"] == task]
        out[task] = {}
        for length in lengths_of(mine):
            values = [100.0 * float(r["score"]) for r in _scored(mine) if int(r["length"]) == length]
            out[task][length] = mean(values) if values else None
    return out


def average_by_length(rows: Iterable[dict]) -> dict[int, float | None]:
    """{length: mean over families of the family score}: each family weighs the same, as RULER averages tasks."""
    fams = family_scores(rows)
    out: dict[int, float | None] = {}
    for length in sorted({L for per in fams.values() for L in per}):
        values = [per[length] for per in fams.values() if per.get(length) is not None]
        out[length] = mean(values) if values else None
    return out


def effective_length(rows: Iterable[dict], threshold: float = RULER_THRESHOLD) -> int:
    """The longest grid length L such that every grid length <= L averages strictly above `threshold` (percent).

    The average at a length is the mean over task families of each family's mean score (over depths and seeds).
    A length with no scored cell (all beyond the model's positions) counts as failing; 0 means even the shortest
    length fails. Like RULER, one failing length stops the count even if a longer one recovers.
    """
    best = 0
    for length, score in sorted(average_by_length(rows).items()):
        if score is None or score <= threshold:
            break
        best = length
    return best


def load_run(path: str | os.PathLike) -> list[dict]:
    """Rows of a run folder (or its results.jsonl); empty or corrupt files are a UserError naming the fix."""
    path = Path(path)
    file = path / "results.jsonl" if path.is_dir() else path
    if not file.exists():
        raise UserError(f"{file} not found: pass a folder written by `longrecall eval niah --output-dir`")
    rows = read_jsonl(file)
    need = {"task", "length", "depth", "score"}
    if not rows:
        raise UserError(f"{file} is empty: run `longrecall eval niah --output-dir {file.parent}` to fill it")
    bad = next((i for i, r in enumerate(rows, 1) if not isinstance(r, dict) or not need <= r.keys()), None)
    if bad is not None:
        raise UserError(f"{file}:{bad} lacks {sorted(need)}: it is not a NIAH results file, regenerate it with `longrecall eval niah`")
    return rows


def fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def summarize(rows: list[dict], threshold: float = RULER_THRESHOLD) -> dict:
    """Everything report.md shows, as JSON-ready data (lengths as strings, depths as strings)."""
    fams = family_scores(rows)
    return {
        "threshold": threshold,
        "effective_length": effective_length(rows, threshold),
        "lengths": lengths_of(rows),
        "families": {t: {str(L): v for L, v in per.items()} for t, per in fams.items()},
        "average": {str(L): v for L, v in average_by_length(rows).items()},
        "cells": {t: {str(d): {str(L): v for L, v in per.items()} for d, per in cell_table(rows, t).items()} for t in fams},
        "n_rows": len(rows),
        "n_scored": len(_scored(rows)),
        "beyond_positions": sorted({int(r["length"]) for r in rows if r.get("beyond_positions")}),
    }


def write_run_report(out_dir: str | os.PathLike, rows: list[dict], title: str = "NIAH grid", threshold: float = RULER_THRESHOLD) -> dict:
    """Heatmap per family, score-by-length chart, summary.json and report.md in out_dir; returns the summary."""
    from .plots import heatmap, line_chart

    out = Path(out_dir)
    summary = summarize(rows, threshold)
    fams = family_scores(rows)
    lengths = lengths_of(rows)
    images = {}
    for task in fams:
        images[task] = f"heatmap_{task}.png"
        heatmap(cell_table(rows, task), out / images[task], title=f"{title}: {task} (score %)")
    series = {**fams, "average": average_by_length(rows)}
    line_chart(series, out / "score_by_length.png", title=f"{title}: score by length", ylabel="score %", threshold=threshold, ylim=(-2, 102))
    summary["images"] = {**images, "score_by_length": "score_by_length.png"}
    write_json(out / "summary.json", summary)

    body = [[t] + [fmt(per.get(L)) for L in lengths] for t, per in series.items()]
    parts = [f"# {title}", "",
             f"Effective length (every length up to it averages > {threshold:g}%): **{summary['effective_length']}** tokens.", "",
             markdown_table(["family"] + [str(L) for L in lengths], body), ""]
    if summary["beyond_positions"]:
        parts += [f"Lengths beyond the model's positions (not asked, n/a): {summary['beyond_positions']}.", ""]
    parts += ["![score by length](score_by_length.png)", ""]
    parts += [f"## {t}\n\n![{t}]({img})\n" for t, img in images.items()]
    with atomic_open(out / "report.md") as fh:
        fh.write("\n".join(parts))
    return summary


def add_arguments(parser) -> None:
    parser.add_argument("run", help="a run folder (with results.jsonl) from `longrecall eval niah`, possibly unfinished")
    parser.add_argument("--threshold", type=float, default=RULER_THRESHOLD, help="effective-length threshold in percent")
    parser.add_argument("--title", default="NIAH grid")


def main(args) -> int:
    """Re-draw heatmaps, summary.json and report.md of a run folder from its results.jsonl."""
    rows = load_run(args.run)
    out = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    summary = write_run_report(out, rows, args.title, args.threshold)
    print(f"effective length (> {args.threshold:g}%): {summary['effective_length']} tokens; report: {out / 'report.md'}")
    return 0
