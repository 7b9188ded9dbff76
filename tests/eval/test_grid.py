"""The NIAH grid with a fake backend: rows and report written, resume, crash safety, beyond-positions marking, flags/YAML."""
from __future__ import annotations

import argparse
import json

import pytest

from longrecall.errors import UserError
from longrecall.eval.grid import GridConfig, _spec, add_arguments, config_from_args, plan_cells, read_done, run_grid
from longrecall.niah import generate_sample


class DictBackend:
    """Answers from a dict keyed by the prompt's user message; an unknown prompt raises (no silent None)."""

    name = "dict"

    def __init__(self, answers: dict, max_positions: int | None = None):
        self.answers, self.max_positions, self.calls = answers, max_positions, 0

    def generate(self, samples, max_new_tokens=64):
        out = []
        for s in samples:
            self.calls += 1
            out.append(self.answers[s.messages()[-1]["content"]])
        return out


def _cfg(tmp_path, **kw):
    base = dict(lengths=[384, 512], depths=[0.0, 1.0], tasks=["single", "chain"], samples=1, output_dir=str(tmp_path / "run"))
    return GridConfig(**{**base, **kw})


def _answers(cfg, tok, right=lambda task, length, depth: depth < 0.5):
    """The correct answer for cells where right(...) holds, a wrong one elsewhere."""
    table = {}
    for cell in plan_cells(cfg):
        s = generate_sample(_spec(cfg, *cell), tok)
        table[s.messages()[-1]["content"]] = " ".join(s.answers) if right(*cell[:3]) else "I do not know."
    return table


def test_grid_writes_rows_and_report(tmp_path, tok):
    cfg = _cfg(tmp_path)
    rows = run_grid(cfg, DictBackend(_answers(cfg, tok)), tok, progress=False)
    assert len(rows) == 8
    for r in rows:
        assert r["score"] == (1.0 if r["depth"] == 0.0 else 0.0)
        assert abs(r["prompt_tokens"] - r["length"]) <= r["length"] // 4 and r["needles"] and "latency_s" in r
    run = tmp_path / "run"
    assert len(read_done(run / "results.jsonl")) == 8
    for name in ["heatmap_single.png", "heatmap_chain.png", "score_by_length.png", "summary.json", "report.md"]:
        assert (run / name).stat().st_size > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["families"]["single"] == {"384": 50.0, "512": 50.0} and summary["effective_length"] == 0
    assert "| single | 50.0 | 50.0 |" in (run / "report.md").read_text()


def test_resume_skips_done_cells_and_extends_the_grid(tmp_path, tok):
    cfg = _cfg(tmp_path)
    answers = _answers(_cfg(tmp_path, depths=[0.0, 0.5, 1.0]), tok)
    run_grid(cfg, DictBackend(answers), tok, progress=False)
    again = DictBackend({})  # would raise on any question
    assert len(run_grid(cfg, again, tok, progress=False)) == 8 and again.calls == 0
    more = DictBackend(answers)
    rows = run_grid(_cfg(tmp_path, depths=[0.0, 0.5, 1.0]), more, tok, progress=False)
    assert more.calls == 4 and len(rows) == 12


def test_crash_mid_grid_keeps_finished_cells(tmp_path, tok):
    cfg = _cfg(tmp_path)
    full = _answers(cfg, tok)
    partial = dict(list(full.items())[:3])  # the 4th cell's prompt is unknown: the backend raises there
    with pytest.raises(KeyError):
        run_grid(cfg, DictBackend(partial), tok, progress=False)
    assert len(read_done(tmp_path / "run" / "results.jsonl")) == 3
    rest = DictBackend(full)
    assert len(run_grid(cfg, rest, tok, progress=False)) == 8 and rest.calls == 5


def test_torn_last_line_is_dropped(tmp_path, tok):
    cfg = _cfg(tmp_path, lengths=[384], tasks=["single"])
    run_grid(cfg, DictBackend(_answers(cfg, tok)), tok, progress=False)
    results = tmp_path / "run" / "results.jsonl"
    with open(results, "a") as fh:
        fh.write('{"task": "single", "len')
    assert len(read_done(results)) == 2 and results.read_text().endswith("}\n")


def test_lengths_beyond_positions_are_marked_not_asked(tmp_path, tok, caplog):
    cfg = _cfg(tmp_path)
    backend = DictBackend(_answers(cfg, tok, right=lambda *a: True), max_positions=400)
    rows = run_grid(cfg, backend, tok, progress=False)
    beyond = [r for r in rows if r["beyond_positions"]]
    assert backend.calls == 4 and len(beyond) == 4 and {r["length"] for r in beyond} == {512}
    assert all(r["score"] is None for r in beyond) and "beyond" in caplog.text
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["effective_length"] == 384 and summary["beyond_positions"] == [512]


def test_other_run_in_the_same_folder_is_refused(tmp_path, tok):
    cfg = _cfg(tmp_path, lengths=[384], tasks=["single"])
    run_grid(cfg, DictBackend(_answers(cfg, tok)), tok, progress=False)
    with pytest.raises(UserError, match="different run .*haystack"):
        run_grid(_cfg(tmp_path, lengths=[384], tasks=["single"], haystack="prose"), DictBackend({}), tok, progress=False)


def test_typos_fail_before_any_work(tmp_path):
    with pytest.raises(UserError, match="unknown task family 'singel'"):
        run_grid(_cfg(tmp_path, tasks=["singel"]), DictBackend({}), progress=False)
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    yaml_file = tmp_path / "grid.yaml"
    yaml_file.write_text("lengths: [1024, 8192]\ntasks: [multikey]\nsamples: 5\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--config", str(yaml_file), "--samples", "3", "--depths", "0,0.5", "--no-answer-prefix"])
    cfg = config_from_args(args)
    assert cfg.lengths == [1024, 8192] and cfg.tasks == ["multikey"] and cfg.samples == 3
    assert cfg.depths == [0.0, 0.5] and cfg.answer_prefix is False and cfg.haystack == "noise"
    with pytest.raises(UserError, match="unknown config key"):
        yaml_file.write_text("lenghts: [1]\n")
        config_from_args(parser.parse_args(["--config", str(yaml_file)]))
