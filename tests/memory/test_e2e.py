"""The end-to-end memory benchmark's pieces: worlds whose questions have one answer, accounting of misses, abstention."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from longrecall.memory import e2e
from longrecall.memory.api import Memory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base():
    return e2e.base_text(60_000, 3)


def test_base_text_has_prose_and_real_docs_at_the_asked_size(base):
    assert len(base) == 60_000
    assert "pip install" in e2e.base_text(1_000_000, 3).lower()  # the packages' docs alternate with prose


@pytest.mark.parametrize("w", range(6))
def test_world_plants_every_needle_and_nothing_of_the_absent_questions(base, w):
    world = e2e.make_world(base, w, 3, absent=2)
    planted = [it for it in world.items if it.planted]
    absent = [it for it in world.items if not it.planted]
    assert [it.family for it in planted] == list(e2e.FAMILIES) and len(absent) == 2
    for it in planted:
        for n in it.sample["needles"]:
            assert n["text"] in world.text
    for it in absent:
        for n in it.sample["needles"]:
            assert n["text"] not in world.text
    assert len(world.text) > len(base)


@pytest.mark.parametrize("w", range(6))
def test_world_items_share_no_name_key_or_value(base, w):
    world = e2e.make_world(base, w, 3, absent=2)
    seen: set[str] = set()
    for it in world.items:
        ident = {x.lower() for n in it.sample["needles"] for x in (n["key"], n["value"]) if x}
        assert not ident & seen, (it.family, ident & seen)
        seen |= ident


def test_every_x_kind_is_named_by_no_other_needle(base):
    for w in range(6):
        world = e2e.make_world(base, w, 3)
        allq = next(it for it in world.items if it.family == "all_needles")
        kinds = e2e._kinds("all_needles", SimpleNamespace(question=allq.sample["question"]))
        assert kinds
        others = [n["text"].lower() for it in world.items if it is not allq for n in it.sample["needles"]]
        assert not any(k in t for k in kinds for t in others)


def _item(targets):
    return e2e.Item("chain", {"question": "q", "answers": ["x"], "metric": "contains", "needles": []}, targets)


def test_account_names_the_first_lost_hop_and_who_lost_it():
    it = _item(["Alpha keeps the box in locker 4.", "Locker 4 is in room B2.", "Room B2 is in Elm Hall."])
    ctx = "junk. Alpha keeps the box in locker 4.  more junk. Room B2 is in Elm Hall."
    a = e2e.account(it, ctx, "Elm Hall", 0.0)
    assert (a["lost_hop"], a["lost_by"], a["evidence_complete"]) == (1, "retrieval", False)
    assert a["evidence_recall"] == pytest.approx(2 / 3)
    full = ctx + " Locker 4 is in room B2."
    assert e2e.account(it, full, "Oak", 0.0)["lost_by"] == "reading"
    assert e2e.account(it, full, "Elm Hall", 1.0)["lost_by"] is None


@pytest.mark.parametrize("text,expected", [
    ("It is not in the notes.", True), ("The notes do not say.", True), ("I don't know.", True),
    ("Unknown.", True), ("", True), (None, True), ("The combination is 4417.", False), ("Room B2.", False),
])
def test_abstained(text, expected):
    assert e2e.abstained(text) is expected


def test_ask_item_scores_and_accounts_through_memory_ask(tmp_path, base):
    world = e2e.make_world(base, 0, 3, absent=1)
    mem = Memory(tmp_path / "m.db", embedder=None)
    mem.add_text(world.text, source="w")
    single = next(it for it in world.items if it.family == "single")
    oracle = lambda prompt: single.sample["answers"][0] if single.targets[0] in prompt else "not in the notes"  # noqa: E731
    mem._generator = oracle
    row = e2e.ask_item(mem, single, "auto", True)
    assert row["evidence_complete"] and row["score"] == 1.0 and row["lost_by"] is None
    absent = next(it for it in world.items if not it.planted)
    assert e2e.ask_item(mem, absent, "auto", True)["abstained"] is True
    mem._generator = lambda prompt: "4417"
    assert e2e.ask_item(mem, absent, "auto", True)["abstained"] is True  # names nothing the memory holds: not read
    assert e2e.ask_item(mem, absent, "auto", True, focus=False)["abstained"] is False  # a reader that always answers
    assert e2e.ask_item(mem, single, "auto", True)["lost_by"] == "reading"
    mem.close()


def test_summarize_counts_misses_by_cause_and_the_false_answer_rate():
    rows = [{"family": "chain", "planted": True, "score": s, "evidence_complete": ec, "evidence_recall": 1.0 if ec else 0.5,
             "lost_hop": lh, "lost_by": by, "latency_s": t}
            for s, ec, lh, by, t in [(1.0, True, None, None, 1.0), (0.0, False, 1, "retrieval", 2.0), (0.0, True, None, "reading", 3.0)]]
    rows += [{"family": "single", "planted": False, "abstained": a, "latency_s": 1.0} for a in (True, True, False, True)]
    s = e2e.summarize(rows)
    assert s["chain"]["lost"] == {"retrieval@hop2": 1, "reading": 1}
    assert s["chain"]["score"]["mean"] == pytest.approx(100 / 3)
    assert s["absent"]["false_answer"]["mean"] == pytest.approx(25.0)
    assert s["chain"]["latency_p50"] == 2.0


def test_benchmark_runs_retrieval_rows_and_resumes(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_memory_e2e.py"), "--sizes", "20000:2", "--rows",
           "retrieval:auto,retrieval:topk", "--output-dir", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 5  # worlds x rows x (4 families + 1 absent)
    summary = json.loads((tmp_path / "summary.json").read_text())["summary"]
    assert set(summary) == {"retrieval:auto@20000", "retrieval:topk@20000"}
    assert "| retrieval:auto | 0.02M | chain |" in (tmp_path / "README.md").read_text()
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == len(lines)  # resumed: nothing asked twice


@pytest.mark.parametrize("args,fix", [
    (["--sizes", "1M:5"], "TOKENS:WORLDS"),
    (["--rows", "gpt:auto"], "reader base, tuned, reader"),
    (["--rows", "tuned:auto"], "pass --tuned"),
])
def test_bench_bad_input_is_one_line_naming_the_fix(tmp_path, args, fix):
    r = subprocess.run([sys.executable, "-m", "longrecall", "memory", "bench", *args, "--output-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and fix in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_two_bench_rows_compare_paired_by_world_and_family(tmp_path):
    import json
    from argparse import Namespace

    import pytest

    from longrecall.errors import UserError
    from longrecall.memory import bench

    def row(name, world, family, score):
        return {"row": name, "size": 1000, "world": world, "family": family, "planted": True, "score": score}

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "results.jsonl").write_text("\n".join(json.dumps(row("tuned:auto", w, "chain", 0.0)) for w in range(6)) + "\n")
    (b / "results.jsonl").write_text("\n".join(json.dumps(row("tuned:auto", w, "chain", 1.0 if w < 5 else 0.0))
                                               for w in range(7)) + "\n")  # world 6 has no partner: left out
    args = Namespace(output_dir=str(tmp_path / "c"), compare=[f"{a}:tuned:auto", f"{b}:tuned:auto"])
    assert bench.main(args) == 0
    d = json.loads((tmp_path / "c" / "compare.json").read_text())["delta"]["chain"]
    assert (d["n"], d["won"], d["tied"], d["lost"]) == (6, 5, 1, 0) and round(d["mean"], 1) == 83.3
    with pytest.raises(UserError, match="has no row"):
        bench.main(Namespace(output_dir=str(tmp_path / "d"), compare=[f"{a}:base:topk", f"{b}:tuned:auto"]))
