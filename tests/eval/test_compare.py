"""Comparing runs: delta tables, per-family tables, effective length per run, files written, bad inputs refused."""
from __future__ import annotations

import argparse
import json

import pytest

from longrecall.errors import UserError
from longrecall.eval import compare
from longrecall.io import write_jsonl



def rows_from(table: dict) -> list[dict]:
    """{task: {length: [scores, one per depth]}} -> grid rows."""
    return [{"task": t, "length": L, "depth": i / max(1, len(v) - 1), "seed": 0, "score": s}
            for t, per in table.items() for L, v in per.items() for i, s in enumerate(v)]

BASE = {"single": {1024: [1, 0], 2048: [0, 0]}, "chain": {1024: [0, 0]}}
TUNED = {"single": {1024: [1, 1], 2048: [1, 0]}, "chain": {1024: [1, 0]}}


def test_delta_is_b_minus_a_per_cell():
    delta = compare.delta_table(rows_from(BASE), rows_from(TUNED), "single")
    assert delta == {0.0: {1024: 0.0, 2048: 100.0}, 1.0: {1024: 100.0, 2048: 0.0}}


def test_compare_runs_tables_and_effective_length():
    data = compare.compare_runs([rows_from(BASE), rows_from(TUNED)], ["base", "tuned"], threshold=60)
    assert data["effective_length"] == {"base": 0, "tuned": 1024}
    assert data["families"]["single"] == {"base": {"1024": 50.0, "2048": 0.0}, "tuned": {"1024": 100.0, "2048": 50.0}}
    assert data["average"]["tuned"] == {"1024": 75.0, "2048": 50.0}
    with pytest.raises(UserError, match="one name per run"):
        compare.compare_runs([rows_from(BASE)], ["a", "b"])


def _cli(argv):
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    return compare.main(parser.parse_args(argv))


def test_cli_writes_report_and_delta_heatmaps(tmp_path, capsys):
    for name, table in [("base", BASE), ("tuned", TUNED)]:
        write_jsonl(tmp_path / name / "results.jsonl", rows_from(table))
    out = tmp_path / "cmp"
    assert _cli([str(tmp_path / "base"), str(tmp_path / "tuned" / "results.jsonl"), "--output-dir", str(out), "--threshold", "60"]) == 0
    report = (out / "report.md").read_text()
    assert "| tuned | 100.0 | 50.0 |" in report and "| base | 1 |" not in report
    assert (out / "delta_single_tuned_minus_base.png").exists() and (out / "delta_chain_tuned_minus_base.png").exists()
    assert json.loads((out / "comparison.json").read_text())["effective_length"] == {"base": 0, "tuned": 1024}
    assert "tuned: effective length 1024" in capsys.readouterr().out


def test_cli_refuses_empty_or_corrupt_runs(tmp_path):
    write_jsonl(tmp_path / "good" / "results.jsonl", rows_from(BASE))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.jsonl").write_text("")
    with pytest.raises(UserError, match="empty"):
        _cli([str(tmp_path / "good"), str(tmp_path / "empty"), "--output-dir", str(tmp_path / "o")])
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(UserError, match="not valid JSON"):
        _cli([str(tmp_path / "good"), str(tmp_path / "bad.jsonl"), "--output-dir", str(tmp_path / "o")])
    with pytest.raises(UserError, match="at least two runs"):
        _cli([str(tmp_path / "good"), "--output-dir", str(tmp_path / "o")])


def test_paired_delta_matches_samples_by_id_and_bounds_the_mean():
    a = [{"id": f"s{i}", "task": "chain", "score": 0.0} for i in range(20)] + [{"id": "only-a", "task": "chain", "score": 1.0}]
    b = [{"id": f"s{i}", "task": "chain", "score": 1.0 if i < 15 else 0.0} for i in range(20)]
    d = compare.paired_delta(a, b, "chain")
    assert (d["n"], d["mean"], d["wins"], d["ties"], d["losses"]) == (20, 75.0, 15, 5, 0)
    assert 50 < d["ci95"][0] < 75 < d["ci95"][1] <= 100  # clearly above 0
    half = compare.paired_delta(a[:20], [{"id": f"s{i}", "task": "chain", "score": float(i % 2)} for i in range(20)], "chain")
    flip = [{"id": f"s{i}", "task": "chain", "score": float(i % 2)} for i in range(20)]
    tie = compare.paired_delta(flip, [{**r, "score": 1 - r["score"]} for r in flip], "chain")
    assert half["ci95"][0] > 0 and tie["mean"] == 0 and tie["ci95"][0] < 0 < tie["ci95"][1]  # swapped wins: no evidence
    assert compare.paired_delta(a, b, "single") is None
    assert compare.paired_delta(a, b, "chain") == d  # seeded
