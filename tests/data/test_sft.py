"""SFT records: every answer format scores 1.0 and fits the length, chains walk hop by hop, files load and repeat."""
import argparse
import json
import sys
import types
from pathlib import Path

import pytest

from longrecall.cli import main as cli
from longrecall.data import common as C
from longrecall.data import sft
from longrecall.errors import UserError
from longrecall.niah import GenSpec, generate_sample
from longrecall.niah.families import FAMILIES
from longrecall.niah.generate import INSTRUCTIONS, SYSTEMS
from longrecall.niah.scoring import score

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def parse(module, *argv):
    p = argparse.ArgumentParser()
    module.add_arguments(p)
    a = p.parse_args(list(argv))
    module.apply_config(a, p)
    return a


@pytest.mark.parametrize("task", list(FAMILIES))
def test_every_format_scores_full_marks(task, tok):
    for i, kind in enumerate(["number", "word", "uuid"]):
        spec = GenSpec(task=task, length=768, depth=0.3, haystack="needles", needle_kind=kind, seed=40 + i)
        rec, s = C.generate_record(spec, tok, lambda s, rng: sft.sft_record(s, tok, rng, hops_p=0.5))
        view = sft.view_of(s)
        for fmt in sft.FORMATS[view.shape]:
            text = sft.render(view, fmt)
            assert score(s, text) == 1.0, (task, fmt, text)
        assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
        assert rec["messages"][:2] == s.messages()
        assert rec["meta"]["tokens"] <= s.length and rec["meta"]["answers"] == s.answers


def test_chain_walks_from_the_question_to_the_answer(tok):
    for direction in ("forward", "backward"):
        s = generate_sample(GenSpec(task="chain", length=1024, hops=3, direction=direction, seed=5), tok)
        v = sft.view_of(s)
        targets = [n for n in s.needles if n["role"] == "target"]
        assert len(v.path) == 4 and v.raw[-1] == s.answers[0]
        person = targets[0]["key"]
        assert (v.path[0] == person) == (direction == "forward") and (v.path[-1] == person) == (direction == "backward")
        facts = [n["text"] for n in targets]
        assert v.facts == (facts if direction == "forward" else facts[::-1])
        arrow = sft.render(v, "arrow")
        assert arrow.startswith("Following the facts: ") and " → ".join(v.path) in arrow
    s = generate_sample(GenSpec(task="vartrack", length=1024, hops=2, direction="backward", seed=5), tok)
    v = sft.view_of(s)
    assert v.path[0].startswith("VAR ") and v.path[-1] == s.answers[0] and len(v.path) == 4


def test_list_answers_follow_document_order(tok):
    s = generate_sample(GenSpec(task="all_needles", length=1024, n_needles=5, seed=2), tok)
    v = sft.view_of(s)
    offsets = {n["value"]: n["token_offset"] for n in s.needles}
    assert sorted(v.values) == sorted(s.answers) and [offsets[x] for x in v.values] == sorted(offsets[x] for x in v.values)
    assert sft.render(v, "numbered").splitlines()[0] == f"1. {v.values[0]}"


def test_dataset_loads_repeats_byte_for_byte_and_keeps_splits_apart(tmp_path, tok):
    from datasets import load_dataset

    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        assert cli(["data", "sft", "--output-dir", str(d), "--n", "14", "--eval-n", "4", "--lengths", "512:2,1k", "--seed", "3"]) == 0
    for name in ("train.jsonl", "eval.jsonl", "manifest.json", "README.md"):
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes(), name
    ds = load_dataset("json", data_files={"train": str(dirs[0] / "train.jsonl"), "eval": str(dirs[0] / "eval.jsonl")})
    assert ds["train"].num_rows == 14 and ds["eval"].num_rows == 4
    assert set(ds["train"].column_names) == {"messages", "meta"}
    assert not set(ds["train"]["meta"][i]["id"] for i in range(14)) & set(ds["eval"]["meta"][i]["id"] for i in range(4))
    for row in ds["train"]:
        assert row["messages"][0]["content"] in SYSTEMS[0]  # the train phrasing pool only
        assert row["messages"][1]["content"].split("\n\n")[0] in INSTRUCTIONS[0]
        assert row["meta"]["tokens"] <= row["meta"]["length"]
    m = json.loads((dirs[0] / "manifest.json").read_text())
    assert m["splits"]["train"]["records"] == 14 and sum(m["splits"]["train"]["counts"]["task"].values()) == 14
    assert m["generator_version"] and m["longrecall_version"] and m["splits"]["train"]["tokens"]["max"] <= 1024
    card = (dirs[0] / "README.md").read_text()
    assert "load_dataset" in card and "assistant turn only" in card
    assert cli(["data", "sft", "--output-dir", str(dirs[1]), "--n", "2", "--lengths", "512", "--seed", "4"]) == 0
    assert not (dirs[1] / "eval.jsonl").exists()  # no stale split left behind


def test_shipped_configs_parse(tok):
    for path in sorted(CONFIGS.glob("data-sft-*.yaml")):
        a = parse(sft, "--config", str(path))
        mix = C.mix_from_args(a)
        assert a.output_dir and a.n >= 1 and {t for t, _ in mix.tasks} <= set(FAMILIES), path
    a = parse(sft, "--config", str(CONFIGS / "data-sft-cpu.yaml"))
    lengths = dict(C.mix_from_args(a).lengths)
    assert max(lengths) <= 8192 and sum(w for n, w in lengths.items() if n <= 4096) > 0.8 * sum(lengths.values())


def test_smoke_config_runs(tmp_path, tok):
    assert cli(["data", "sft", "--config", str(CONFIGS / "data-sft-cpu-smoke.yaml"), "--output-dir", str(tmp_path), "--n", "6", "--eval-n", "0"]) == 0
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 6


def test_bad_input_is_a_user_error(tmp_path):
    for argv, words in [
        (["--tasks", "needle_soup"], "unknown task family"),
        (["--haystacks", "user"], "--corpus"),
        (["--lengths", "1k:x"], "not a number"),
        (["--needle-kinds", "emoji"], "unknown needle kind"),
        (["--haystacks", "user", "--corpus", "pkgdocs"], "held-out real text"),
    ]:
        with pytest.raises(UserError, match=words):
            sft.main(parse(sft, "--output-dir", str(tmp_path), *argv))
    with pytest.raises(UserError, match="--output-dir"):
        sft.main(parse(sft))
    assert not list(tmp_path.iterdir())


def test_atropos_path_is_delegated(monkeypatch, tmp_path):
    import longrecall.env

    monkeypatch.setitem(sys.modules, "longrecall.env.rollouts", None)  # the module missing: a UserError says so
    monkeypatch.delattr(longrecall.env, "rollouts", raising=False)
    with pytest.raises(UserError, match="longrecall.env.rollouts"):
        sft.main(parse(sft, "--via", "atropos", "--output-dir", str(tmp_path)))
    fake = types.ModuleType("longrecall.env.rollouts")
    fake.sft_main = lambda a: ("called", a.out, a.groups)

    def add_sft_arguments(p):
        p.add_argument("out")
        p.add_argument("--tokenizer", default="default")  # shared with ours, not added twice
        p.add_argument("--groups", type=int, default=8)

    fake.add_sft_arguments = add_sft_arguments
    monkeypatch.setitem(sys.modules, "longrecall.env.rollouts", fake)
    monkeypatch.setattr(longrecall.env, "rollouts", fake, raising=False)
    got = sft.main(parse(sft, "--via", "atropos", "--output-dir", str(tmp_path), "--groups", "3"))
    assert got == ("called", str(tmp_path / "train.jsonl"), 3)
