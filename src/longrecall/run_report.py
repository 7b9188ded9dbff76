"""`longrecall report --run-dir DIR`: the pipeline's one-page report (what `longrecall run` ends with).

It reads what the stages left in the run folder: the scorecards (scorecard/, shown first: report_scorecard.py), NIAH
grids (eval/*/results.jsonl), the training log and curve, perplexity, LIFT, the Atropos environment's evaluation,
and each stage's time and peak memory; it writes report.md with before/after heatmaps, per-family tables, effective
lengths and the quality bar, in plain words. One-sample grids claim no effective length or quality bar when the
run's main grids (eval/base, eval/tuned) are absent; the scorecard's intervals speak for those.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

from .errors import UserError
from .eval.report import RULER_THRESHOLD, family_scores, fmt, load_run, markdown_table
from .io import atomic_open
from .report_scorecard import linked_pages, scorecard_lines

# Run folders under eval/ that belong together (a grid and its long end), and the name shown for them.
GROUPS = {
    "base": ["base", "base-long"],
    "tuned": ["tuned", "tuned-long"],
    "rag": ["rag"],
    "hybrid": ["hybrid"],
    "lift": ["lift"],
    "env-tuned": ["env-tuned"],
}
REALTEXT = {"base": "base-realtext", "tuned": "tuned-realtext"}
# Retrieval strategies side by side on related needles, per chain length (cpu preset).
RETRIEVAL = {
    "2 hops": {"top-k": "rag-topk-h2", "multi-hop / find-all": "rag", "hybrid (tuned + multi-hop)": "hybrid"},
    "3 hops": {"top-k": "rag-topk-h3", "multi-hop / find-all": "rag-h3", "hybrid (tuned + multi-hop)": "hybrid-h3"},
}


def retrieval_lines(run_dir: Path) -> list[str]:
    """Plain top-k against multi-hop / find-all retrieval and the hybrid, per family, length and chain length."""
    lines = []
    for title, runs in RETRIEVAL.items():
        got = {name: _rows(run_dir, [folder]) for name, folder in runs.items()}
        got = {k: v for k, v in got.items() if v}
        if len(got) < 2:
            continue
        body = []
        lengths = sorted({L for r in got.values() for per in family_scores(r).values() for L in per})
        for fam in ("chain", "all_needles"):
            for name, rows in got.items():
                per = family_scores(rows).get(fam, {})
                body.append([fam, name] + [fmt(per.get(L)) for L in lengths])
        lines += [f"### {title}", "", markdown_table(["family", "retrieval"] + [str(L) for L in lengths], body), ""]
    return (["## Retrieval on related needles and all-needles (reader: base SmolLM2 unless hybrid)", ""] + lines) if lines else []

# The cpu preset's quality bar (issue: the main job): (family, lengths, metric threshold in %, label).
BAR = [
    ("single", [1024, 2048, 4096, 8192], 90.0, "single needle >= 90% at 1k-8k"),
    ("single", [16384], 70.0, "single needle >= 70% at 16k"),
    ("all_needles", [4096], 80.0, "all-needles F1 >= 0.8 at 4k"),
    ("chain", [4096], 70.0, "related needles (2 hops) >= 70% at 4k"),
]


def _rows(run_dir: Path, names: list[str]) -> list[dict]:
    rows = []
    for n in names:
        f = run_dir / "eval" / n / "results.jsonl"
        if f.exists() and f.stat().st_size:
            rows += load_run(f)
    return rows


def _machine() -> str:
    mem = ""
    try:
        kb = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{platform.machine()}, {os.cpu_count()} CPU cores{mem}, {platform.system()} {platform.release()}"


def effective(rows: list[dict], threshold: float = RULER_THRESHOLD) -> int:
    """Longest length L such that every measured length up to L averages above the threshold over the families
    measured at that length (at 8k-16k the cpu preset measures the single needle only: said in the report)."""
    fams = family_scores(rows)
    lengths = sorted({L for per in fams.values() for L, v in per.items() if v is not None})
    best = 0
    for L in lengths:
        vals = [per[L] for per in fams.values() if per.get(L) is not None]
        if not vals or sum(vals) / len(vals) <= threshold:
            break
        best = L
    return best


def winners(data: dict) -> list[str]:
    """Plain words: for each family and length, which run scored highest (ties named together)."""
    lines = ["## Which wins where", ""]
    for fam, per in data["families"].items():
        lengths = sorted({int(L) for p in per.values() for L in p})
        parts = []
        for L in lengths:
            scores = {n: per[n].get(str(L)) for n in per if per[n].get(str(L)) is not None}
            if scores:
                top = max(scores.values())
                parts.append(f"{L}: {' = '.join(n for n, v in scores.items() if v == top)} ({top:.0f})")
        lines.append(f"- **{fam}**: " + "; ".join(parts))
    return lines + [""]


def _cells(rows: list[dict]) -> int:
    return sum(1 for r in rows if r.get("score") is not None)


def bar_lines(rows_by_name: dict[str, list[dict]]) -> list[str]:
    tuned = family_scores(rows_by_name.get("tuned", []))
    base = family_scores(rows_by_name.get("base", []))
    if not tuned:
        return []
    body = []
    for fam, lengths, target, label in BAR:
        for L in lengths:
            t, b = tuned.get(fam, {}).get(L), base.get(fam, {}).get(L)
            if t is None:
                verdict = "not measured"
            else:
                verdict = "met" if t >= target else f"missed by {target - t:.0f} points"
            body.append([label, str(L), fmt(b), fmt(t), verdict])
    eb, et = effective(rows_by_name.get("base", [])), effective(rows_by_name["tuned"])
    body.append(["effective length >= 8k (85.6)", "-", str(eb), str(et), "met" if et >= 8192 else f"missed ({et})"])
    return ["## Quality bar", "", markdown_table(["target", "length", "base", "tuned", "verdict"], body), ""]


def _stage_table(run_dir: Path) -> list[str]:
    files = sorted((p for p in (run_dir / "stages").glob("*.json") if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime)
    if not files:
        return []
    body, total = [], 0.0
    for f in files:
        s = json.loads(f.read_text())
        total += s.get("seconds") or 0
        body.append([s.get("name", f.stem), f"{(s.get('seconds') or 0) / 60:.1f}", f"{s.get('peak_rss_mb') or 0:.0f}", f"`{s.get('command', '')}`"])
    body.append(["total", f"{total / 60:.1f}", "", ""])
    return ["## Time and memory per stage", "", markdown_table(["stage", "minutes", "peak MB", "command"], body), ""]


def _train_lines(run_dir: Path) -> list[str]:
    log = run_dir / "train" / "train_log.jsonl"
    if not log.exists():
        return []
    hist = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    losses = [h["loss"] for h in hist if "loss" in h]
    lines = ["## Training", ""]
    if losses:
        k = max(1, len(losses) // 4)
        lines.append(f"{len(losses)} logged steps; mean loss of the first quarter: {sum(losses[:k]) / k:.3f}, of the last quarter: "
                     f"{sum(losses[-k:]) / k:.3f} (one sequence a step, chats and long-text blocks mixed, so single steps are noisy).")
    if (run_dir / "train" / "loss.png").exists():
        lines += ["", "![training loss](train/loss.png)"]
    return lines + [""]


def _json_section(path: Path, title: str, keys: list[str] | None = None) -> list[str]:
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    shown = {k: data[k] for k in keys if k in data} if keys else data
    return [f"## {title}", "", "```json", json.dumps(shown, indent=2)[:3000], "```", ""]


def _ppl_lines(run_dir: Path) -> list[str]:
    out = []
    for name in ("base", "tuned"):
        f = run_dir / "ppl" / name / "perplexity.json"
        if f.exists():
            d = json.loads(f.read_text())
            res = d.get("results", d)
            items = res.items() if isinstance(res, dict) else [(str(r.get("length")), r) for r in res]
            cells = []
            for L, v in items:
                ppl = v.get("ppl") if isinstance(v, dict) else v
                if isinstance(ppl, (int, float)):
                    cells.append(f"{L}: {ppl:.2f}")
            out.append([name, ", ".join(cells)])
    if not out:
        return []
    lines = ["## Perplexity by length (held-out prose)", "", markdown_table(["model", "perplexity at length"], out), ""]
    for name in ("base", "tuned"):
        if (run_dir / "ppl" / name / "perplexity.png").exists():
            lines += [f"![{name} perplexity](ppl/{name}/perplexity.png)", ""]
    return lines


def write_report(run_dir: str | Path, threshold: float = RULER_THRESHOLD) -> Path:
    from .eval.compare import write_comparison

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"{run_dir} does not exist: run `longrecall run --preset NAME --output-dir {run_dir}` first")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file: pass the run folder of `longrecall run`")
    found = [p for pattern in ("preset.json", "stages/*.json", "eval/*/results.jsonl", "ppl/*/perplexity.json", "train/train_log.jsonl",
                               "lift/result.json", "env/metrics.json", "scorecard/*/scorecard.json") for p in run_dir.glob(pattern)]
    if not found:
        raise UserError(f"{run_dir} holds no run to report (no preset.json, stages or results): pass the folder given to "
                        "`longrecall run --output-dir`")
    rows_by_name = {name: _rows(run_dir, parts) for name, parts in GROUPS.items()}
    rows_by_name = {k: v for k, v in rows_by_name.items() if v}
    preset = json.loads((run_dir / "preset.json").read_text()).get("preset", "?") if (run_dir / "preset.json").exists() else "?"
    lines = [
        f"# longrecall report: preset `{preset}`",
        "",
        f"{dt.date.today().isoformat()} on {_machine()}. Model: the embedded SmolLM2-135M-Instruct unless the preset says otherwise.",
        "Scores are percentages (set F1 for all-needles, hop credit for chains); prompts use the held-out phrasings.",
        "",
    ]
    lines += scorecard_lines(run_dir)
    main_grids = bool(_rows(run_dir, ["base"]) or _rows(run_dir, ["tuned"]))  # not only a long end or retrieval grids
    if len(rows_by_name) >= 2:
        names = list(rows_by_name)
        data = write_comparison(run_dir / "compare", [rows_by_name[n] for n in names], names, threshold)
        if main_grids:
            lines += ["## Effective context length", "",
                      markdown_table(["run", f"effective length (> {threshold:g}%)"], [[n, str(effective(rows_by_name[n], threshold))] for n in names]),
                      "", "(At lengths where only the single-needle family is measured, the average is that family's score.)", ""]
        lines += ["## Per family and length" + ("" if main_grids else " (one-sample grids: no intervals, no claims)"), ""]
        for fam, per in data["families"].items():
            lengths = sorted({int(L) for p in per.values() for L in p})
            body = [[n] + [fmt(per[n].get(str(L))) for L in lengths] for n in names if n in per]
            lines += [f"### {fam}", "", markdown_table(["run"] + [str(L) for L in lengths], body), ""]
        lines += winners(data)
        lines += ["Cells asked per run: " + ", ".join(f"{n} {_cells(rows_by_name[n])}" for n in names)
                  + " (one sample per length x depth x family: small differences are noise).", ""]
        lines += ["![average by length](compare/average_by_length.png)", ""]
        for img in data.get("images", []):
            lines += [f"![{img}](compare/{img})", ""]
    for name in rows_by_name:
        for part in GROUPS[name]:
            for png in sorted((run_dir / "eval" / part).glob("heatmap_*.png")):
                lines += [f"![{part} {png.stem}](eval/{part}/{png.name})"]
    lines.append("")
    if preset == "cpu" and main_grids:  # the bar reads one-sample grids: without them it claims nothing
        lines += bar_lines(rows_by_name)
    real = {n: _rows(run_dir, [d]) for n, d in REALTEXT.items()}
    real = {n: r for n, r in real.items() if r}
    if real:
        body = []
        for n, r in real.items():
            for fam, per in family_scores(r).items():
                body.append([n, fam] + [fmt(per.get(L)) for L in sorted(per)])
        lengths = sorted({L for r in real.values() for per in family_scores(r).values() for L in per})
        lines += ["## Real text as haystack (READMEs of installed packages; never used in training)", "",
                  markdown_table(["run", "family"] + [str(L) for L in lengths], body), ""]
    lines += retrieval_lines(run_dir)
    lines += _ppl_lines(run_dir)
    lines += _train_lines(run_dir)
    env_evals = sorted((run_dir / "env").glob("step-*/metrics.json"))  # one folder per evaluation; the newest is shown
    lines += _json_section(env_evals[-1] if env_evals else run_dir / "env" / "metrics.json", "Through the Atropos environment (served model)")
    lines += _json_section(run_dir / "lift" / "result.json", "LIFT on one long input")
    lines += _stage_table(run_dir)
    out = run_dir / "report.md"
    with atomic_open(out) as fh:
        fh.write("\n".join(lines))
    return out


def publish(run_dir: str | Path, dest: str | Path) -> Path:
    """Copy report.md, every picture it shows and every scorecard page it links (keeping relative paths) to `dest`,
    e.g. docs/results/cpu."""
    import re
    import shutil

    run_dir, dest = Path(run_dir), Path(dest)
    text = (run_dir / "report.md").read_text()
    for rel in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text) + linked_pages(run_dir, text):
        src = run_dir / rel
        if src.exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for extra in ("preset.json",):
        if (run_dir / extra).exists():
            shutil.copy2(run_dir / extra, dest / extra)
    with atomic_open(dest / "report.md") as fh:
        fh.write(text)
    return dest / "report.md"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True, help="the run folder of `longrecall run`")
    p.add_argument("--publish", default=None, help="also copy the report and its pictures here (e.g. docs/results/cpu)")
    p.add_argument("--threshold", type=float, default=RULER_THRESHOLD)


def main(a) -> None:
    print(f"wrote {write_report(a.run_dir, a.threshold)}")
    if a.publish:
        print(f"published {publish(a.run_dir, a.publish)}")
