"""A budget curve: scorecard score against training minutes, each point paired with the starting point.

    longrecall eval curve --point sft@0=runs/rl/scorecard/sft --point evidence@60=runs/rl/scorecard/grpo-evidence \
        --point answer@55=runs/rl/scorecard/grpo-answer --output-dir runs/rl/curve

Every point is a scorecard folder (`longrecall eval scorecard --output-dir`) of the same config, so all points
answered the same prompts: each row's score is drawn with its 95% interval, and the table gives each point's paired
difference from the baseline (the first point unless --baseline names another series) with its interval.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UserError
from ..io import atomic_open, write_json


def parse_point(text: str) -> tuple[str, float, str]:
    """'SERIES@MINUTES=DIR' -> (series, minutes, dir)."""
    try:
        head, folder = text.split("=", 1)
        series, minutes = head.rsplit("@", 1)
        return series, float(minutes), folder
    except ValueError:
        raise UserError(f"--point {text!r}: write SERIES@MINUTES=SCORECARD_DIR, e.g. sft@0=runs/rl/scorecard/sft") from None


def _table(folder: str) -> tuple[dict, str]:
    f = Path(folder) / "scorecard.json"
    if not f.exists():
        raise UserError(f"{f} not found: each --point names a folder written by `longrecall eval scorecard --output-dir`")
    s = json.loads(f.read_text())
    return s["table"], s["config_hash"]


def curve(points: list[tuple[str, float, str]], baseline: str | None = None, seed: int = 0) -> dict:
    """Per point and scorecard row: the score ("all" lengths) with its interval and the paired delta vs the baseline."""
    from .scorecard import _load_rows, compare

    if not points:
        raise UserError("no --point given: pass at least two, e.g. --point sft@0=DIR --point grpo@60=DIR")
    base = next((p for p in points if p[0] == baseline), None) if baseline else points[0]
    if base is None:
        raise UserError(f"--baseline {baseline}: no --point of that series (series: {', '.join(dict.fromkeys(p[0] for p in points))})")
    tables = {p[2]: _table(p[2]) for p in points}
    hashes = {h for _, h in tables.values()}
    if len(hashes) > 1:
        raise UserError(f"the points are scorecards of different configs ({', '.join(sorted(hashes))}): a curve pairs the same "
                        "prompts, so make every point with the same --config")
    base_rows = _load_rows(base[2])
    out = []
    for series, minutes, folder in points:
        deltas = {} if folder == base[2] else {d["row"]: d for d in compare(base_rows, _load_rows(folder), seed) if d["length"] == "all"}
        for row, per in tables[folder][0].items():
            cell = per.get("all")
            if cell:
                d = deltas.get(row)
                out.append({"series": series, "minutes": minutes, "dir": folder, "row": row, "mean": cell["mean"], "lo": cell["lo"],
                            "hi": cell["hi"], "n": cell["n"], "delta": d and {k: d[k] for k in ("mean", "lo", "hi", "n")}})
    return {"baseline": {"series": base[0], "minutes": base[1]}, "points": out}


def _is_base(p: dict, result: dict) -> bool:
    return p["series"] == result["baseline"]["series"] and p["minutes"] == result["baseline"]["minutes"]


def lines(result: dict) -> list[str]:
    b = result["baseline"]
    md = [f"| series | minutes | row | n | score (95% CI) | vs {b['series']} at {b['minutes']:g} min (paired, 95% CI) |", "|---|---|---|---|---|---|"]
    for p in result["points"]:
        d = p["delta"]
        delta = f"{d['mean']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]" if d else "baseline" if _is_base(p, result) else "n/a"
        md.append(f"| {p['series']} | {p['minutes']:g} | {p['row']} | {p['n']} | {p['mean']:.1f} [{p['lo']:.1f}, {p['hi']:.1f}] | {delta} |")
    return md


def picture(result: dict, path: Path, title: str) -> Path:
    from .plots import _figure, _save

    rows = list(dict.fromkeys(p["row"] for p in result["points"]))
    fig = _figure(4.2 * len(rows), 3.6)
    for i, row in enumerate(rows, 1):
        ax = fig.add_subplot(1, len(rows), i)
        for series in dict.fromkeys(p["series"] for p in result["points"]):
            pts = sorted((p["minutes"], p["mean"], p["lo"], p["hi"]) for p in result["points"] if p["row"] == row and p["series"] == series)
            base = [p for p in result["points"] if p["row"] == row and _is_base(p, result)]
            if base and series != base[0]["series"]:  # each series starts from the baseline point
                pts = [(base[0]["minutes"], base[0]["mean"], base[0]["lo"], base[0]["hi"])] + pts
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
                        marker="o", capsize=3, label=series)
        ax.set_title(row)
        ax.set_xlabel("training minutes")
        ax.set_ylabel("score % (95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--point", action="append", required=True, metavar="SERIES@MINUTES=DIR",
                   help="a scorecard folder and the training minutes behind it (repeat; the first is the baseline)")
    p.add_argument("--baseline", default=None, metavar="SERIES", help="the series whose point the others are paired with (default: the first point's)")
    p.add_argument("--title", default="held-out score against training minutes")
    p.add_argument("--output-dir", required=True, help="folder for curve.json, curve.md and curve.png")


def main(a) -> int:
    result = curve([parse_point(t) for t in a.point], a.baseline)
    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "curve.json", result)
    md = [f"# {a.title}", "", *lines(result), ""]
    with atomic_open(out / "curve.md") as fh:
        fh.write("\n".join(md))
    picture(result, out / "curve.png", a.title)
    print("\n".join(md))
    return 0
