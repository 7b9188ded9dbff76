"""The scorecard section that `longrecall report` puts first when the run folder has scorecard/ in it.

It reads only what `longrecall eval scorecard` wrote: scorecard/{base,tuned}/scorecard.json (every score with its 95%
interval) and scorecard/compare/compare.json (tuned − base paired on the same samples). A difference is called
claimed only when compare.json says its interval excludes 0; nothing here re-derives a verdict from point scores.
"""
from __future__ import annotations

import json
from pathlib import Path

from .eval.report import markdown_table
from .eval.scorecard import ALL_ROWS

SIDES = ("base", "tuned")


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _score(s: dict | None) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    return f"{s['mean']:.0f} [{s['lo']:.0f}, {s['hi']:.0f}] (n={s['n']})"


def _delta(d: dict | None) -> tuple[str, str]:
    if not d:
        return "n/a", "n/a"
    return (f"{d['mean']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] (n={d['n']}, won/tied/lost {d['won']}/{d['tied']}/{d['lost']})",
            "yes" if d.get("significant") else "no")


def _effective(e: dict | None) -> str:
    if not e or e.get("tokens") is None:
        return "n/a"
    lo, hi = (e.get("ci95") or [None, None])[:2]
    return f"{e['tokens']} [{lo}, {hi}]"


def _paired(comp: dict | None) -> tuple[dict, str]:
    """{(row, length): line} of compare.json, and the name of its difference (tuned − base unless it says otherwise)."""
    if not comp:
        return {}, "tuned − base"
    a, b = Path(str(comp.get("a", "base"))).name, Path(str(comp.get("b", "tuned"))).name
    return {(x["row"], x["length"]): x for x in comp.get("lines", [])}, f"{b} − {a}"


def scorecard_lines(run_dir: Path) -> list[str]:
    """The report's opening section, or [] when the run has no scorecard folder."""
    root = run_dir / "scorecard"
    if not root.is_dir():
        return []
    cards = {s: _load(root / s / "scorecard.json") for s in SIDES}
    cards = {s: c for s, c in cards.items() if c}
    lines = ["## Scorecard (many samples a cell, 95% intervals)", ""]
    if not cards:
        return lines + ["The scorecard stages have not finished: no scorecard/*/scorecard.json yet.", ""]
    shown = "tuned" if "tuned" in cards else "base"
    if (root / shown / "scorecard.png").exists():
        lines += [f"![{shown} scorecard](scorecard/{shown}/scorecard.png)", ""]
    paired, diff_name = _paired(_load(root / "compare" / "compare.json"))
    config_order = [r.get("name") for s in cards for r in (_load(root / s / "run.json") or {}).get("config", {}).get("rows", [])]
    rows = [r for r in dict.fromkeys(config_order + [r for c in cards.values() for r in c.get("table", {})])
            if any(r in c.get("table", {}) for c in cards.values())]  # the config's order, as scorecard.md shows it
    body = []
    for r in rows:
        got = [_score(cards[s]["table"].get(r, {}).get("all")) if s in cards else "not run" for s in SIDES]
        body.append([r, *got, *_delta(paired.get((r, "all")))])
    if (ALL_ROWS, "all") in paired:  # every sample once, whatever its family: the difference with the most behind it
        body.append([f"**{ALL_ROWS}**", "", "", *_delta(paired[(ALL_ROWS, "all")])])
    lines += [
        "Each family over all its lengths: score % with its 95% interval (Wilson for 0/1 scores, bootstrap otherwise). "
        f"The difference is {diff_name} in points, paired on the same samples (seeded bootstrap); it is claimed only "
        "when its interval excludes 0.", "",
        markdown_table(["family", "base (all lengths)", "tuned (all lengths)", f"{diff_name} [95% interval]", "claimed"], body), ""]
    by_length = [f"{x['row']} at {x['length']}: {x['mean']:+.1f} [{x['lo']:+.1f}, {x['hi']:+.1f}]"
                 for (r, L), x in paired.items() if L != "all" and x.get("significant")]
    if paired:
        lines += ["Claimed differences at single lengths: " + ("; ".join(by_length) if by_length else "none") + ".", ""]
    elif len(cards) == 2:
        lines += ["No paired comparison yet (scorecard/compare/compare.json is missing): the difference is not claimed.", ""]
    eff = [[s, _effective(c.get("effective_length", {}).get("ruler")), _effective(c.get("effective_length", {}).get("nolima"))]
           for s, c in cards.items()]
    lines += ["Effective length in tokens [95% interval]. RULER rule: the family average stays ≥ 85.6; NoLiMa rule: "
              "≥ 85% of the model's own 1k score.", "",
              markdown_table(["model", "RULER rule", "NoLiMa rule"], eff), ""]
    links = [f"[{s} scorecard](scorecard/{s}/scorecard.md)" for s in SIDES if (root / s / "scorecard.md").exists()]
    if (root / "compare" / "compare.md").exists():
        links.append("[paired comparison per length](scorecard/compare/compare.md)")
    if links:
        lines += ["Full tables, per length and per depth: " + ", ".join(links) + ".", ""]
    return lines


def linked_pages(run_dir: Path, text: str) -> list[str]:
    """What `report --publish` copies besides the report's pictures: each scorecard page the report links to, with
    the pictures and JSON beside it (the page shows them by relative path), so the published links work."""
    import re

    rels = []
    for rel in re.findall(r"(?<!!)\[[^\]]*\]\((scorecard/[^)]+\.md)\)", text):
        folder = (run_dir / rel).parent
        rels += [str(p.relative_to(run_dir)) for p in sorted(folder.iterdir()) if p.suffix in (".md", ".png", ".json")]
    return list(dict.fromkeys(rels))
