"""Intervals: Wilson at the edges, bootstrap for partial credit, paired differences, effective length by both rules."""
import pytest

from longrecall.eval import stats


def test_wilson_matches_the_textbook_values_and_stays_inside_0_1():
    lo, hi = stats.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = stats.wilson(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-3)
    lo, hi = stats.wilson(50, 100)
    assert (lo, hi) == (pytest.approx(0.4038, abs=1e-3), pytest.approx(0.5962, abs=1e-3))


def test_summarize_picks_wilson_for_binary_scores_and_bootstrap_for_partial_credit():
    s = stats.summarize([1, 0, 1, 1])
    assert s["method"] == "wilson" and s["mean"] == 75.0 and s["lo"] < 75 < s["hi"]
    s = stats.summarize([0.5, 1.0, 0.25, 0.75] * 5)
    assert s["method"] == "bootstrap" and s["lo"] < s["mean"] < s["hi"]
    assert stats.summarize([])["mean"] is None


def test_the_interval_narrows_with_more_samples():
    small = stats.summarize([1, 0] * 10)
    big = stats.summarize([1, 0] * 200)
    assert (big["hi"] - big["lo"]) < (small["hi"] - small["lo"]) / 3


def test_paired_difference_is_claimed_only_when_its_interval_excludes_zero():
    a = {str(i): 0.0 for i in range(40)}
    b = {str(i): 1.0 if i < 30 else 0.0 for i in range(40)}
    d = stats.paired(a, b)
    assert d["mean"] == 75.0 and d["won"] == 30 and d["tied"] == 10 and d["lost"] == 0 and d["significant"]
    noisy = {str(i): float(i % 2) for i in range(40)}
    flipped = {str(i): float((i + 1) % 2) for i in range(40)}
    d = stats.paired(noisy, flipped)
    assert d["lo"] < 0 < d["hi"] and not d["significant"]
    assert stats.paired({"x": 1.0}, {"y": 1.0}) is None  # nothing shared: no comparison


def test_effective_length_by_the_ruler_and_nolima_rules():
    cells = {"a": {1024: [1.0] * 10, 2048: [0.9] * 10, 4096: [0.5] * 10},
             "b": {1024: [0.9] * 10, 2048: [0.9] * 10, 4096: [0.5] * 10}}
    assert stats.effective_length(cells, "ruler") == 2048  # 95, 90, 50 vs 85.6
    assert stats.effective_length(cells, "nolima") == 2048  # 90 >= 0.85 * 95, 50 is not
    weak = {"a": {1024: [0.4] * 10, 2048: [0.36] * 10, 4096: [0.2] * 10}}
    assert stats.effective_length(weak, "ruler") == 0
    assert stats.effective_length(weak, "nolima") == 2048  # relative to the model's own 1k score
    lo, hi = stats.effective_length_interval(cells, "ruler")
    assert lo == hi == 2048  # no variance inside the cells: the interval is a point
