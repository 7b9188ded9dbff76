"""The pipeline: presets are valid tables of real commands; stages resume, refuse missing prerequisites, name the fix."""
import json
import shlex
from pathlib import Path

import pytest

from longrecall import pipeline as P
from longrecall.cli import _resolve, build_parser
from longrecall.errors import UserError


@pytest.mark.parametrize("preset", sorted(p.stem for p in P.PRESET_DIR.glob("*.yaml")))
def test_every_preset_stage_is_a_valid_command(preset, tmp_path):
    data = P.load_preset(preset)
    for st in data["stages"]:
        argv = P.stage_argv(st, tmp_path, P.preset_inputs(data, tmp_path))
        fn, args = _resolve(build_parser(), argv)  # argparse exits on an unknown flag
        assert callable(fn), st["name"]
        for need in st.get("needs", []):
            assert need in [s["name"] for s in data["stages"]]


def _preset(tmp_path, stages):
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps({"stages": stages}))  # JSON is YAML
    return str(path)


def _args(preset, out, stage=None):
    return type("A", (), {"preset": preset, "output_dir": str(out), "stage": stage, "force": False, "list": False})()


def test_stages_run_once_and_resume(tmp_path, tok):
    gen = "niah generate --task single --length 512 --out {out}/tasks.jsonl"
    preset = _preset(tmp_path, [{"name": "gen", "run": gen}, {"name": "gen2", "needs": ["gen"], "run": gen.replace("tasks", "more")}])
    out = tmp_path / "run"
    P.main(_args(preset, out))
    info = json.loads((out / "stages" / "gen.json").read_text())
    assert info["seconds"] >= 0 and info["peak_rss_mb"] > 0 and (out / "tasks.jsonl").exists()
    stamp = (out / "tasks.jsonl").stat().st_mtime_ns
    P.main(_args(preset, out))  # second run: everything done, nothing redone
    assert (out / "tasks.jsonl").stat().st_mtime_ns == stamp


def test_missing_prerequisite_and_failed_stage_name_the_fix(tmp_path):
    preset = _preset(tmp_path, [
        {"name": "a", "run": "niah generate --task nope --out {out}/x.jsonl"},
        {"name": "b", "needs": ["a"], "run": "niah families"},
    ])
    with pytest.raises(UserError, match="needs stage 'a'"):
        P.main(_args(preset, tmp_path / "r", stage="b"))
    with pytest.raises(UserError, match="stage 'a' failed .* --stage a"):
        P.main(_args(preset, tmp_path / "r", stage="a"))
    with pytest.raises(UserError, match="unknown preset"):
        P.load_preset("no-such-preset")


def _run_args(preset, out, stage=None, inputs=(), publish=None, list_=False):
    return type("A", (), {"preset": preset, "output_dir": str(out), "stage": stage, "force": False, "list": list_,
                          "input": list(inputs), "publish": publish})()


def test_preset_stage_runs_from_outside_the_repository(tmp_path, monkeypatch, capsys):
    """Shipped presets and configs are package data: a stage runs from any folder and writes only under --output-dir."""
    from longrecall.cli import main as cli_main

    away = tmp_path / "elsewhere"
    away.mkdir()
    monkeypatch.chdir(away)
    # A packaged config named the way the README names it, from a folder with no configs/ in it.
    assert cli_main(["data", "sft", "--config", "configs/data-sft-cpu-smoke.yaml", "--n", "2", "--eval-n", "0",
                     "--output-dir", "runs/sft"]) == 0
    assert (away / "runs" / "sft" / "train.jsonl").exists()
    # Two stages of the shipped demo preset, each in its own process, from here.
    P.main(_run_args("demo", "runs/demo", stage="tasks,report"))
    assert (away / "runs" / "demo" / "tasks" / "lift.json").exists() and (away / "runs" / "demo" / "report.md").exists()
    assert sorted(p.name for p in away.iterdir()) == ["runs"]  # nothing outside the run folders
    # The cpu preset publishes its report only when asked; rl-cpu reads its SFT adapter from beside --output-dir.
    capsys.readouterr()
    P.main(_run_args("cpu", "runs/cpu", list_=True))
    assert "report --run-dir runs/cpu\n" in capsys.readouterr().out.replace("  \n", "\n").replace(" \n", "\n")
    P.main(_run_args("cpu", "runs/cpu", list_=True, publish="docs/results/cpu"))
    assert "report --run-dir runs/cpu --publish docs/results/cpu" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"needs input 'sft_adapter' at runs/rl/\.\./cpu/train/adapter, which does not exist"):
        P.main(_run_args("rl-cpu", "runs/rl", stage="eval_sft"))
    assert not (away / "runs" / "rl").exists()
    P.main(_run_args("rl-cpu", "runs/rl", inputs=["sft_adapter=/x/adapter"], list_=True))
    assert "--adapter /x/adapter" in capsys.readouterr().out


def test_cpu_and_gpu_presets_score_with_the_scorecard_and_compare_after_both(tmp_path):
    """The quality presets measure base and tuned with the scorecard (intervals), then compare them paired."""
    for preset, config in (("cpu", "configs/eval/scorecard-cpu.yaml"), ("gpu", "configs/eval/scorecard.yaml")):
        stages = {st["name"]: st for st in P.load_preset(preset)["stages"]}
        order = list(stages)
        assert not {"eval_base", "eval_tuned", "eval_base_realtext", "eval_tuned_realtext"} & set(stages)
        assert {"eval_base_long", "eval_tuned_long", "rag", "hybrid", "report"} <= set(stages)
        argv = {n: P.stage_argv(stages[n], tmp_path) for n in ("scorecard_base", "scorecard_tuned", "scorecard_compare")}
        for n in ("scorecard_base", "scorecard_tuned"):
            assert argv[n][:4] == ["eval", "scorecard", "--config", config]
        assert argv["scorecard_base"][-1] == str(tmp_path / "scorecard/base") and "--adapter" not in argv["scorecard_base"]
        assert argv["scorecard_tuned"][argv["scorecard_tuned"].index("--adapter") + 1] == str(tmp_path / "train/adapter")
        assert stages["scorecard_tuned"]["needs"] == ["train"]
        assert set(stages["scorecard_compare"]["needs"]) == {"scorecard_base", "scorecard_tuned"}
        assert argv["scorecard_compare"] == ["eval", "scorecard", "--compare", str(tmp_path / "scorecard/base"),
                                             str(tmp_path / "scorecard/tuned"), "--output-dir", str(tmp_path / "scorecard/compare")]
        assert order.index("scorecard_compare") > max(order.index("scorecard_base"), order.index("scorecard_tuned"))
        assert order.index("scorecard_compare") < order.index("report")
    cpu = {st["name"]: st for st in P.load_preset("cpu")["stages"]}
    assert cpu["scorecard_base"]["threads"] == cpu["scorecard_tuned"]["threads"] == cpu["train"]["threads"] == 1


def test_compare_stage_waits_for_both_scorecards(tmp_path):
    out = tmp_path / "run"
    (out / "stages").mkdir(parents=True)
    (out / "stages" / "scorecard_base.json").write_text("{}")
    with pytest.raises(UserError, match="needs stage 'scorecard_tuned'"):
        P.main(_run_args("cpu", out, stage="scorecard_compare"))
