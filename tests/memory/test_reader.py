"""`memory ask` names its reader and shows its evidence: each piece's document, true offsets and text, and for a
chain the hop that reached each piece; --json carries the same."""
import argparse
import json

import pytest

from longrecall.errors import UserError
from longrecall.memory import reader as R
from longrecall.memory.api import Memory, add_ask_arguments, ask_main

from .test_api import FACTS, FILLER, fake_model

PEOPLE = [("Alice", "4417", "B12"), ("Bruno", "1203", "A7"), ("Chiara", "5521", "C33"), ("Dmitri", "8830", "D4")]
CHAINS = " ".join(p for n, num, room in PEOPLE for p in (f"{n}'s locker is locker {num}.", FILLER[:1500], f"Locker {num} is in room {room}.", FILLER[:1500]))


def _parse(argv):
    p = argparse.ArgumentParser()
    add_ask_arguments(p)
    return p.parse_args(argv)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "m.db"
    mem = Memory(path, embedder=None)
    mem.add(FACTS, source="facts.txt")
    mem.close()
    return str(path)


def test_evidence_offsets_point_at_the_stored_text_and_hops_are_traced(tmp_path, capsys):
    db = tmp_path / "chains.db"
    mem = Memory(db, embedder=None)
    mem.add(CHAINS, source="chains.txt")
    mem.close()
    assert ask_main(_parse(["Which room is Chiara's locker in?", "--store", str(db), "-k", "1", "--no-generate", "--json"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] is None and out["reader"] is None and out["strategy"] == "auto"
    for e in out["evidence"]:
        assert CHAINS[e["start"]:e["end"]] == e["text"] and e["source"] == "chains.txt"
    start = next(e for e in out["evidence"] if "Chiara's locker" in e["text"])
    room = next(e for e in out["evidence"] if "room C33" in e["text"])
    assert start["hop"] == 0 and room["hop"] >= 1  # the room was reached by following the locker, not by the question
    followed = [t for t in out["trace"] if t["hop"] == room["hop"]][0]["via"]
    assert any("5521" in v for v in followed)
    assert not any("room A7" in e["text"] for e in out["evidence"])


def test_text_output_is_the_answer_then_evidence_then_the_trace(tmp_path, capsys, monkeypatch):
    db = str(tmp_path / "chains.db")
    mem = Memory(db, embedder=None)
    mem.add(CHAINS, source="chains.txt")
    mem.close()
    monkeypatch.setattr(R, "load_reader", lambda spec: lambda prompt: "Room C33." if "room C33" in prompt else "?")
    assert ask_main(_parse(["Which room is Chiara's locker in?", "--store", db, "-k", "1"])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Room C33."
    assert out[2].startswith("evidence (") and "reader reader-v1 (the shipped memory reader" in out[2]
    assert any(line.startswith("  [chains.txt @ ") and "room C33" in line for line in out)
    assert "trace:" in out and any(line.startswith("  hop 0 via the question") for line in out)
    assert any(line.startswith("  hop 1 via") and "5521" in line for line in out)
    assert ask_main(_parse(["Which room is Chiara's locker in?", "--store", db, "-k", "1", "--no-evidence"])) == 0
    assert capsys.readouterr().out == "Room C33.\n"


def test_a_walked_answer_gives_its_last_hop_and_shows_the_walk(tmp_path, capsys, monkeypatch):
    """A reader answering a chain link by link and looping back: the answer is the hop before the loop; the walk is
    shown under it and in --json."""
    import json

    db = str(tmp_path / "chains.db")
    mem = Memory(db, embedder=None)
    mem.add(CHAINS, source="chains.txt")
    mem.close()
    monkeypatch.setattr(R, "load_reader", lambda spec: lambda prompt: "5521 -> C33 -> 5521 -> A7")
    assert ask_main(_parse(["Which room is Chiara's locker in?", "--store", db, "-k", "1"])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["C33", "read as: 5521 -> C33"]
    assert ask_main(_parse(["Which room is Chiara's locker in?", "--store", db, "-k", "1", "--json"])) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["answer"] == "C33" and got["walk"] == ["5521", "C33"]


def test_a_middle_link_answer_is_read_on_and_shown(tmp_path, capsys, monkeypatch):
    """The reader answers the room (a middle link, named by two of the three evidence sentences): `memory ask` reads
    those two again and answers the wing, showing "read on:"; --no-read-on keeps the first answer; --json carries it."""
    import json

    db = str(tmp_path / "chains.db")
    mem = Memory(db, embedder=None)
    mem.add(" ".join(["Chiara's locker is locker 5521.", FILLER[:1500], "Locker 5521 is in room C33.", FILLER[:1500],
                      "Room C33 is in the east wing.", FILLER[:1500]]), source="chains.txt")
    mem.close()
    seen = []

    def reader(prompt):
        seen.append(prompt)
        return "Room C33." if "Chiara's locker is" in prompt else "The east wing."

    monkeypatch.setattr(R, "load_reader", lambda spec: reader)
    question = "Which wing is Chiara's locker in?"
    assert ask_main(_parse([question, "--store", db])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["The east wing.", "read on: The east wing."] and len(seen) == 2
    assert "Locker 5521 is in room C33." in seen[1] and "Chiara" not in seen[1].split("Question:")[0]  # only the neighbourhood
    assert ask_main(_parse([question, "--store", db, "--json"])) == 0
    assert json.loads(capsys.readouterr().out)["onward"] == ["The east wing."]
    seen.clear()
    assert ask_main(_parse([question, "--store", db, "--no-read-on", "--no-evidence"])) == 0
    assert capsys.readouterr().out == "Room C33.\n" and len(seen) == 1


def test_the_reader_comes_from_the_flag_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LONGRECALL_READER", raising=False)
    assert R.reader_spec(None) == "reader-v1"  # the shipped reader is the default
    monkeypatch.setenv("LONGRECALL_READER", str(tmp_path))
    assert R.reader_spec(None) == str(tmp_path) and R.reader_spec("base") == "base"


def test_an_adapter_reader_loads_on_its_recorded_base(monkeypatch, tmp_path):
    ad = tmp_path / "adapter"
    ad.mkdir()
    (ad / "adapter_config.json").write_text("{}")
    (ad / "longrecall_adapter.json").write_text(json.dumps({"base_model": "some/base"}))
    calls = []
    monkeypatch.setattr("longrecall.memory.api.default_generator", lambda *a, **k: calls.append((a, k)) or fake_model)
    assert R.load_reader(str(ad)) is fake_model
    assert calls == [(("some/base", 64), {"adapter": str(ad)})]
    assert R.describe(str(ad)) == f"adapter {ad}"


def test_a_reader_that_is_neither_is_one_line(db, tmp_path):
    with pytest.raises(UserError, match="--reader .*not 'base', an adapter folder"):
        ask_main(_parse(["Which room is Alice's locker in?", "--store", db, "--reader", str(tmp_path / "nothing")]))


def test_the_shipped_reader_is_a_loadable_adapter_on_the_embedded_model(monkeypatch):
    meta = json.loads((R.SHIPPED_DIR / "longrecall_adapter.json").read_text())
    assert meta["base_model"] == "default" and meta["positions"]["factor"] == 1
    assert (R.SHIPPED_DIR / "adapter_model.safetensors").stat().st_size > 1_000_000
    calls = []
    monkeypatch.setattr("longrecall.memory.api.default_generator", lambda *a, **k: calls.append((a, k)) or fake_model)
    assert R.load_reader("reader-v1") is fake_model and calls == [(("default", 64), {"adapter": str(R.SHIPPED_DIR)})]
    assert R.load_reader("reader-v2") is fake_model and calls[-1] == (("default", 64), {"adapter": str(R.READERS / "reader-v2")})
    assert "another shipped" in R.describe("reader-v2") and "the shipped" in R.describe("reader-v1")


@pytest.mark.integration
@pytest.mark.parametrize("reader", ["reader-v1", "reader-v2"])
def test_a_shipped_reader_reads_a_key_among_neighbours_and_a_non_literal_question(reader):
    """The real model with each shipped reader, on names and wordings it was not trained on: one key's value among its
    neighbours', and questions that share no word with their fact but the person (bike/bicycle, car/automobile,
    journal/notebook) beside another person's fact."""
    from longrecall.memory.api import build_prompt

    read = R.load_reader(reader, max_new_tokens=24)
    codes = "The door code for amber-falcon is 4417204.\n\nThe door code for brave-otter is 9021377."
    answer = read(build_prompt("What is the door code for brave-otter?", codes))
    assert "9021377" in answer and "4417204" not in answer
    cases = [("Where should someone go to find Pedro's automobile?", "Pedro parked his car behind the old cinema.\n\nLucia parked her van at the harbour.", "cinema"),
             ("In what spot is Aiko's notebook kept?", "Aiko stores her journal in the attic.\n\nBen keeps his ledger in the cellar.", "attic")]
    for question, notes, where in cases:
        assert where in read(build_prompt(question, notes))


@pytest.mark.integration
def test_reader_v1_follows_a_chain_to_its_end_beside_a_distractor_link():
    """reader-v1 (the default) on a two-hop chain whose distractor link comes last. reader-v2 answers this one with
    the distractor's room (P9): on 16 hand-written chains like it v1 got 12 and v2 9, and on the benchmark's blind
    worlds v2 lost 25 points of chains (readers/reader-v2/README.md), which is why v1 stays the default."""
    from longrecall.memory.api import build_prompt

    read = R.load_reader("reader-v1", max_new_tokens=24)
    notes = "Marisol keeps the drum kit in locker 7730.\n\nLocker 7730 is in room K41.\n\nLocker 1208 is in room P9."
    assert "K41" in read(build_prompt("Which room holds Marisol's drum kit?", notes))


@pytest.mark.integration
def test_the_shipped_reader_reads_each_piece_of_an_every_x_question_in_one_batch():
    """memory.listing's batch: the same answers as one prompt at a time (left padding changes nothing), one value each."""
    from longrecall.memory.api import build_prompt

    read = R.load_reader(R.SHIPPED, max_new_tokens=24)
    facts = ["The vault code for amber-falcon is 4417204.", "Remember that the vault code for brave-otter is 9021377.",
             "A vault code worth noting: 3380112 belongs to calm-heron."]
    prompts = [build_prompt("List every vault code in the notes.", f) for f in facts]
    batched = read.many(prompts, cap=24)
    assert batched == [read(p, cap=24) for p in prompts]
    assert all(code in a for code, a in zip(("4417204", "9021377", "3380112"), batched))
