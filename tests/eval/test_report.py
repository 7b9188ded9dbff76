"""Aggregation and effective length, pinned by golden cases; run loading errors; the heatmap writer."""
from __future__ import annotations

import pytest

from longrecall.errors import UserError
from longrecall.eval.report import average_by_length, cell_table, effective_length, family_scores, load_run, summarize


def rows_from(table: dict) -> list[dict]:
    """{task: {length: [scores in 0..1, one per depth]}} -> grid rows (depths 0, 0.5, 1 ...)."""
    rows = []
    for task, per in table.items():
        for length, scores in per.items():
            for i, s in enumerate(scores):
                rows.append({"task": task, "length": length, "depth": i / max(1, len(scores) - 1), "seed": 0, "score": s})
    return rows


@pytest.mark.parametrize("table, expected", [
    ({"single": {1024: [1, 1], 2048: [1, 1], 4096: [1, 0]}}, 2048),  # 4096 averages 50
    ({"single": {1024: [1, 1], 2048: [0, 0], 4096: [1, 1]}}, 1024),  # a recovery after a failure does not count
    ({"single": {1024: [0, 1]}}, 0),  # even the shortest length fails
    ({"single": {1024: [1, 1], 2048: [1, 1]}, "chain": {1024: [1, 1], 2048: [1, 0.4]}}, 1024),  # 2048: (100 + 70) / 2 = 85 <= 85.6
    ({"single": {1024: [1, 1], 2048: [1, 1]}, "chain": {1024: [1, 1], 2048: [1, 0.5]}}, 2048),  # 2048: (100 + 75) / 2 = 87.5
    ({"a": {512: [0.856]}}, 0),  # strictly above: exactly 85.6 fails
    ({"a": {512: [0.857]}}, 512),
])
def test_effective_length_golden(table, expected):
    assert effective_length(rows_from(table)) == expected


def test_families_weigh_equally_whatever_their_cell_count():
    rows = rows_from({"single": {1024: [1, 1, 1, 1]}, "chain": {1024: [0]}})
    assert family_scores(rows) == {"single": {1024: 100.0}, "chain": {1024: 0.0}}
    assert average_by_length(rows) == {1024: 50.0}
    assert effective_length(rows, threshold=40) == 1024


def test_unscored_cells_are_none_and_fail_effective_length():
    rows = rows_from({"single": {1024: [1, 1]}}) + [
        {"task": "single", "length": 2048, "depth": 0.0, "seed": 0, "score": None, "beyond_positions": True}]
    assert cell_table(rows, "single")[0.0] == {1024: 100.0, 2048: None}
    assert average_by_length(rows)[2048] is None and effective_length(rows) == 1024
    assert summarize(rows)["beyond_positions"] == [2048]


def test_load_run_errors_name_the_fix(tmp_path):
    with pytest.raises(UserError, match="not found.*longrecall eval niah"):
        load_run(tmp_path / "nope")
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(UserError, match="is empty"):
        load_run(tmp_path)
    (tmp_path / "results.jsonl").write_text('{"task": "single"}\n')
    with pytest.raises(UserError, match="not a NIAH results file"):
        load_run(tmp_path)
    (tmp_path / "results.jsonl").write_text('{"task": \n')
    with pytest.raises(UserError, match="not valid JSON"):
        load_run(tmp_path / "results.jsonl")


def test_heatmap_and_line_chart_write_pngs(tmp_path):
    from longrecall.eval.plots import heatmap, line_chart

    png = heatmap({0.0: {1024: 100.0, 2048: None}, 1.0: {1024: 12.5, 2048: 0.0}}, tmp_path / "h.png", title="t")
    assert png.read_bytes()[:4] == b"\x89PNG"
    line = line_chart({"a": {1024: 1.0, 2048: None}}, tmp_path / "l.png", threshold=85.6)
    assert line.read_bytes()[:4] == b"\x89PNG"


def test_report_command_redraws_a_run_folder(tmp_path, capsys):
    import argparse

    from longrecall.eval import report
    from longrecall.io import write_jsonl

    write_jsonl(tmp_path / "results.jsonl", rows_from({"single": {1024: [1, 1], 2048: [1, 0]}}))
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    assert report.main(parser.parse_args([str(tmp_path)])) == 0
    assert "effective length (> 85.6%): 1024" in capsys.readouterr().out
    assert (tmp_path / "heatmap_single.png").exists() and "**1024**" in (tmp_path / "report.md").read_text()
