"""DPO pairs: rejected differs from chosen, scores lower, uses the same format; every negative kind occurs; files load."""
import argparse
import json
import random

import pytest

from longrecall.cli import main as cli
from longrecall.data import common as C
from longrecall.data import dpo, sft
from longrecall.errors import UserError
from longrecall.niah import GenSpec
from longrecall.niah.families import FAMILIES
from longrecall.niah.scoring import normalize, score


def pair(tok, **spec):
    rec, s = C.generate_record(GenSpec(**spec), tok, lambda s, rng: dpo.dpo_record(s, tok, rng), "dpo")
    assert rec is not None, spec
    return rec, s


@pytest.mark.parametrize("task", list(FAMILIES))
def test_rejected_scores_lower_than_chosen(task, tok):
    for i, kind in enumerate(["number", "word", "uuid"]):
        rec, s = pair(tok, task=task, length=768, depth=0.6, haystack="needles", needle_kind=kind, seed=60 + i)
        chosen, rejected = rec["chosen"][0]["content"], rec["rejected"][0]["content"]
        assert rec["prompt"] == s.messages() and rec["chosen"][0]["role"] == rec["rejected"][0]["role"] == "assistant"
        assert normalize(chosen) != normalize(rejected)
        assert score(s, chosen) == 1.0 and score(s, rejected) < 1.0, (task, rec["meta"]["rejection"], chosen, rejected)
        assert rec["meta"]["rejected_score"] == round(score(s, rejected), 4)
        assert max(rec["meta"]["tokens"], rec["meta"]["rejected_tokens"]) <= s.length


def test_each_kind_of_hard_negative(tok):
    rng = random.Random(0)
    _, s = pair(tok, task="chain", length=1024, hops=3, direction="forward", seed=1)
    opts = dpo.rejected_views(s, sft.view_of(s), rng)
    stop = opts["early_stop"]
    assert stop.path == sft.view_of(s).path[:-1] and 0 < score(s, sft.render(stop, "arrow")) < 1
    assert score(s, sft.render(opts["distractor"], "bare")) == 0.0
    _, s = pair(tok, task="multikey", length=768, seed=2)
    opts = dpo.rejected_views(s, sft.view_of(s), rng)
    dis = {n["value"] for n in s.needles if n["role"] == "distractor"}
    assert opts["distractor"].values[0] in dis and "near_miss" in opts
    assert sum(a != b for a, b in zip(opts["near_miss"].values[0], s.answers[0])) == 1
    _, s = pair(tok, task="all_needles", length=1024, n_needles=4, n_distractors=2, seed=3)
    opts = dpo.rejected_views(s, sft.view_of(s), rng)
    assert len(opts["missing"].values) == 3 and set(opts["missing"].values) < set(s.answers)
    assert len(set(opts["invented"].values) - set(s.answers)) == 1
    assert len(set(opts["distractor"].values) & {n["value"] for n in s.needles if n["role"] == "distractor"}) == 1
    for kind, view in opts.items():
        assert score(s, sft.render(view, "bullets")) < 1.0, kind


def test_dataset_loads_and_repeats_byte_for_byte(tmp_path, tok):
    from datasets import load_dataset

    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        assert cli(["data", "dpo", "--output-dir", str(d), "--n", "14", "--lengths", "512,1k", "--seed", "1"]) == 0
    for name in ("train.jsonl", "manifest.json", "README.md"):
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes(), name
    ds = load_dataset("json", data_files=str(dirs[0] / "train.jsonl"))["train"]
    assert ds.num_rows == 14 and {"prompt", "chosen", "rejected"} <= set(ds.column_names)
    for row in ds:
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
        assert row["meta"]["rejected_score"] < row["meta"]["chosen_score"] == 1.0
    m = json.loads((dirs[0] / "manifest.json").read_text())
    assert sum(m["splits"]["train"]["counts"]["rejection"].values()) == 14
    assert "DPOTrainer" in (dirs[0] / "README.md").read_text()


def test_bad_input_and_atropos_without_module(tmp_path, monkeypatch):
    import sys

    p = argparse.ArgumentParser()
    dpo.add_arguments(p)
    with pytest.raises(UserError, match="unknown task family"):
        dpo.main(p.parse_args(["--output-dir", str(tmp_path), "--tasks", "nope"]))
    import longrecall.env

    monkeypatch.setitem(sys.modules, "longrecall.env.rollouts", None)  # the module missing: never run real rollouts
    monkeypatch.delattr(longrecall.env, "rollouts", raising=False)
    with pytest.raises(UserError, match="--via direct"):
        dpo.main(p.parse_args(["--output-dir", str(tmp_path), "--via", "atropos"]))
    assert not list(tmp_path.iterdir())
