"""`longrecall report` on a run with scorecards: the scorecard comes first with its intervals and claims; one-sample
grids claim no quality bar or effective length on their own; old runs with eval/base keep their quality bar."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

from longrecall import run_report
from longrecall.eval import scorecard as S
from longrecall.io import write_json, write_jsonl

CFG = S.ScorecardConfig(rows=[S.Row("single", "single"), S.Row("chain", "chain")], lengths=[1024, 2048],
                        samples={1024: 6, 2048: 4})
# {row: {length: scores by sample index}}: the tuned model gains on single at 2k and nowhere else.
BASE = {"single": {1024: [1] * 6, 2048: [0] * 4}, "chain": {1024: [1, 0, 1, 0, 1, 0], 2048: [0] * 4}}
TUNED = {"single": {1024: [1] * 6, 2048: [1] * 4}, "chain": BASE["chain"]}


def _card(folder: Path, table: dict) -> dict:
    rows = [{"row": r, "task": r, "length": L, "index": i, "id": f"{r}-{L}-{i}", "depth": [0.0, 0.5, 1.0][i % 3], "score": float(s)}
            for r, per in table.items() for L, scores in per.items() for i, s in enumerate(scores)]
    folder.mkdir(parents=True)
    write_jsonl(folder / "results.jsonl", rows)
    write_json(folder / "run.json", {"identity": {}, "config": dataclasses.asdict(CFG)})  # as run_scorecard leaves it
    summary = S.summarize(rows, CFG)
    S.write_outputs(folder, summary, CFG, folder.name)  # the real writer: scorecard.json/.md/.png and heatmaps
    return summary


def _grid(folder: Path, table: dict) -> None:
    """A one-sample NIAH grid: {task: {length: [score per depth]}}."""
    write_jsonl(folder / "results.jsonl", [{"task": t, "length": L, "depth": i / 2, "seed": 0, "score": s}
                                           for t, per in table.items() for L, scores in per.items() for i, s in enumerate(scores)])


def _run(tmp_path: Path, tuned: bool = True) -> tuple[Path, dict]:
    run = tmp_path / "run"
    write_json(run / "preset.json", {"preset": "cpu", "stages": []})
    cards = {"base": _card(run / "scorecard" / "base", BASE)}
    if tuned:
        cards["tuned"] = _card(run / "scorecard" / "tuned", TUNED)
        S.compare_main(SimpleNamespace(compare=[str(run / "scorecard" / "base"), str(run / "scorecard" / "tuned")]),
                       run / "scorecard" / "compare")
    for name, score in (("base-long", 1), ("tuned-long", 1)):  # the cpu preset's long end: single needle, one sample a cell
        (run / "eval" / name).mkdir(parents=True)
        _grid(run / "eval" / name, {"single": {8192: [score] * 3}})
    return run, cards


def _sections(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, flags=re.M)


def test_scorecard_comes_first_with_intervals_claims_and_effective_lengths(tmp_path, capsys):
    run, cards = _run(tmp_path)
    text = run_report.write_report(run).read_text()
    capsys.readouterr()
    assert _sections(text)[0].startswith("Scorecard")
    assert re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)[0] == "scorecard/tuned/scorecard.png"  # the first picture
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in text.splitlines() if line.startswith("| single") or line.startswith("| chain")}
    single, chain = table["single"], table["chain"]
    assert list(table) == ["single", "chain"]  # the config's row order, as scorecard.md has it
    b, t = cards["base"]["table"]["single"]["all"], cards["tuned"]["table"]["single"]["all"]
    assert single[0] == f"{b['mean']:.0f} [{b['lo']:.0f}, {b['hi']:.0f}] (n=10)" == "60 [31, 83] (n=10)"
    assert single[1] == f"{t['mean']:.0f} [{t['lo']:.0f}, {t['hi']:.0f}] (n=10)"
    line = next(x for x in json.loads((run / "scorecard/compare/compare.json").read_text())["lines"]
                if x["row"] == "single" and x["length"] == "all")
    assert single[2].startswith(f"+40.0 [{line['lo']:+.1f}, {line['hi']:+.1f}] (n=10") and line["lo"] > 0
    assert single[3] == "yes" and chain[2].startswith("+0.0 [+0.0, +0.0]") and chain[3] == "no"
    assert "single at 2048: +100.0 [+100.0, +100.0]" in text and "chain at 1024" not in text
    for side in ("base", "tuned"):  # both rules, each with its interval
        e = cards[side]["effective_length"]
        row = f"| {side} | {e['ruler']['tokens']} [{e['ruler']['ci95'][0]}, {e['ruler']['ci95'][1]}] | " \
              f"{e['nolima']['tokens']} [{e['nolima']['ci95'][0]}, {e['nolima']['ci95'][1]}] |"
        assert row in text
    for link in ("scorecard/base/scorecard.md", "scorecard/tuned/scorecard.md", "scorecard/compare/compare.md"):
        assert f"]({link})" in text
    # The one-sample long end is shown but claims nothing: no quality bar, no effective length from it.
    assert "Quality bar" not in text and "Effective context length" not in text
    assert "Per family and length (one-sample grids: no intervals, no claims)" in _sections(text)


def test_base_scorecard_alone_is_shown_without_a_claim(tmp_path):
    run, _ = _run(tmp_path, tuned=False)
    text = run_report.write_report(run).read_text()
    assert re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)[0] == "scorecard/base/scorecard.png"
    single = next(line for line in text.splitlines() if line.startswith("| single"))
    assert "| not run | n/a | n/a |" in single and "yes" not in single


def test_publish_copies_the_linked_scorecard_pages_with_their_pictures(tmp_path):
    run, _ = _run(tmp_path)
    run_report.write_report(run)
    dest = run_report.publish(run, tmp_path / "pub").parent
    for rel in ("scorecard/tuned/scorecard.png", "scorecard/tuned/scorecard.md", "scorecard/base/heatmap_single.png",
                "scorecard/compare/compare.md"):
        assert (dest / rel).exists(), rel
    assert not (dest / "scorecard/base/results.jsonl").exists()


def test_runs_with_the_main_grids_keep_their_quality_bar(tmp_path):
    run = tmp_path / "old"
    write_json(run / "preset.json", {"preset": "cpu", "stages": []})
    for name, s in (("base", 0), ("tuned", 1)):
        (run / "eval" / name).mkdir(parents=True)
        _grid(run / "eval" / name, {"single": {1024: [s] * 3, 2048: [s] * 3}})
    text = run_report.write_report(run).read_text()
    assert "Scorecard" not in text and "## Quality bar" in text and "## Effective context length" in text
    assert "| single needle >= 90% at 1k-8k | 1024 | 0.0 | 100.0 | met |" in text
