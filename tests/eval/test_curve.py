"""The budget curve: scorecard points over training minutes, each paired with the baseline on the same prompts."""
import json

import pytest

from longrecall.cli import main as cli_main
from longrecall.errors import UserError
from longrecall.eval import curve as C
from longrecall.eval import scorecard as SC

from .test_scorecard import Scripted, _cfg


def _scorecard(folder, cfg, tok, right_every):
    rows = SC.run_scorecard(cfg, folder, backend=Scripted(right_every=right_every), tokenizer=tok, progress=False)
    SC.write_outputs(folder, SC.summarize(rows, cfg), cfg, "t")


def test_points_are_paired_with_the_baseline_and_drawn(tmp_path, tok):
    cfg = _cfg(samples={512: 6, 1024: 2, 4096: 1})
    for name, every in (("sft", 10**9), ("half", 2), ("all", 1)):
        _scorecard(tmp_path / name, cfg, tok, every)
    out = tmp_path / "curve"
    assert cli_main(["eval", "curve", "--point", f"sft@0={tmp_path / 'sft'}", "--point", f"rl@30={tmp_path / 'half'}",
                     "--point", f"rl@60={tmp_path / 'all'}", "--output-dir", str(out)]) == 0
    result = json.loads((out / "curve.json").read_text())
    pts = {(p["series"], p["minutes"], p["row"]): p for p in result["points"]}
    assert pts[("sft", 0, "single")]["delta"] is None and pts[("sft", 0, "single")]["mean"] == 0.0
    full = pts[("rl", 60, "single")]
    assert full["mean"] == 100.0 and full["delta"]["mean"] == 100.0 and full["delta"]["n"] == 8
    assert 0 < pts[("rl", 30, "single")]["delta"]["mean"] < 100
    assert "| rl | 60 | single | 8 | 100.0" in (out / "curve.md").read_text() and "baseline" in (out / "curve.md").read_text()
    assert (out / "curve.png").stat().st_size > 0


def test_points_of_different_configs_or_bad_specs_are_one_line(tmp_path, tok):
    _scorecard(tmp_path / "a", _cfg(samples={512: 2, 1024: 1, 4096: 1}), tok, 2)
    _scorecard(tmp_path / "b", _cfg(samples={512: 3, 1024: 1, 4096: 1}), tok, 2)
    with pytest.raises(UserError, match="different configs"):
        C.curve([("a", 0, str(tmp_path / "a")), ("b", 10, str(tmp_path / "b"))])
    with pytest.raises(UserError, match="SERIES@MINUTES=SCORECARD_DIR"):
        C.parse_point("sft=dir")
    with pytest.raises(UserError, match="not found"):
        C.curve([("a", 0, str(tmp_path / "missing"))])
