"""memory.closest: a one-hop question's reader sees only the evidence sentence closest to it in meaning; chains,
every-X questions and --no-closest see everything."""
import argparse

import numpy as np
import pytest

from longrecall.memory import reader as R
from longrecall.memory.api import Memory, add_ask_arguments, ask_main
from longrecall.memory.closest import applies, closest
from longrecall.rag.chunking import Chunk

from .test_api import FILLER

SYNONYMS = {"pram": "stroller", "stroller": "stroller", "cat": "kitten", "kitten": "kitten"}
NEEDLES = ["Last week Fiona stored their stroller at the stable.", "Fiona tucked their cat into a corner of the cellar."]


def meaning(texts):
    """A toy sentence embedder that knows two synonym pairs: one axis per thing, unit vectors."""
    axes = sorted(set(SYNONYMS.values()))
    out = np.full((len(texts), len(axes) + 1), 0.1, np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().replace(".", " ").replace("?", " ").split():
            if w in SYNONYMS:
                out[i, axes.index(SYNONYMS[w])] += 1
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _chunk(text, start):
    return Chunk(doc_id=1, index=start, start=start, end=start + len(text), text=text)


def test_closest_picks_by_meaning_and_applies_only_to_one_hop_questions():
    chunks = [_chunk(NEEDLES[1], 0), _chunk(NEEDLES[0], 100)]
    assert closest("Fiona needs the pram back. Where is it?", chunks, meaning).text == NEEDLES[0]
    assert closest("Where is Fiona's kitten?", chunks, meaning).text == NEEDLES[1]
    assert applies("Where is the pram?", "auto", chunks, [{"hop": 0, "via": []}])
    assert not applies("Where is the pram?", "auto", chunks[:1], [{"hop": 0, "via": []}])  # nothing to choose
    assert not applies("Where is the pram?", "auto", chunks, [{"hop": 0, "via": []}, {"hop": 1, "via": ["4417"]}])  # a chain
    assert not applies("List all the special magic numbers for Fiona.", "auto", chunks, [{"hop": 0, "via": []}])  # every-X


def _memory(path, reader=None, ranker=meaning):
    mem = Memory(path, embedder=None, generator=reader, ranker=ranker)
    mem.add(" ".join([NEEDLES[1], FILLER[:1500], NEEDLES[0], FILLER[:1500]]), source="notes.txt")
    return mem


def test_ask_shows_the_reader_only_the_closest_sentence(tmp_path):
    prompts = []

    def reader(prompt, cap=None):
        prompts.append(prompt)
        return "The stable." if "stroller" in prompt else "The cellar."

    mem = _memory(tmp_path / "m.db", reader)
    got = mem.ask("Fiona needs the pram back. Where is it?")
    assert got.answer == "The stable." and got.chosen_from == 2 and NEEDLES[0] in got.context and NEEDLES[1] not in got.context
    assert "cellar" not in prompts[0]
    both = mem.ask("Fiona needs the pram back. Where is it?", closest=False)
    assert both.chosen_from == 0 and all(n in both.context for n in NEEDLES)
    assert all(n in mem.ask("Fiona needs the pram back. Where is it?", generate=False).context for n in NEEDLES)  # retrieval shows all
    mem.close()
    off = _memory(tmp_path / "off.db", reader, ranker=None)
    assert off.ask("Fiona needs the pram back. Where is it?").chosen_from == 0
    off.close()


def test_cli_names_the_choice_and_no_closest_turns_it_off(tmp_path, capsys, monkeypatch):
    db = str(tmp_path / "m.db")
    _memory(db).close()
    monkeypatch.setattr(R, "load_reader", lambda spec: lambda prompt: "The stable." if "stroller" in prompt and "cellar" not in prompt else "The cellar.")
    monkeypatch.setattr(Memory, "ranker", lambda self: meaning)
    p = argparse.ArgumentParser()
    add_ask_arguments(p)
    assert ask_main(p.parse_args(["Fiona needs the pram back. Where is it?", "--store", db])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "The stable." and "(1 pieces, the closest in meaning of 2," in out[2]
    assert ask_main(p.parse_args(["Fiona needs the pram back. Where is it?", "--store", db, "--no-closest", "--no-evidence"])) == 0
    assert capsys.readouterr().out == "The cellar.\n"


@pytest.mark.integration
def test_the_installed_embedder_picks_the_paraphrased_fact_among_the_same_persons_facts():
    """all-MiniLM-L6-v2 (installed with longrecall) on hand-written wordings outside the task grammar: the fact that
    answers the question shares no content word with it but the person; the other facts are the same person's."""
    from longrecall.rag.retrievers import load_embedder

    embed = load_embedder()
    cases = [
        ("Where did Tomas leave his bike?", ["Tomas left his umbrella in the lobby.", "Tomas chained his bicycle to the north gate."]),
        ("Which room holds Mei's notebook?", ["Mei keeps her journal in the reading room.", "Mei keeps her kettle in the kitchen.",
                                              "Mei hung her coat in the hallway."]),
        ("Where is the physician Ana works with?", ["Ana's doctor has an office on Elm Street.", "Ana's lawyer has an office on Pine Street."]),
        ("What did Joel do with his automobile?", ["Joel sold his piano last spring.", "Joel lent his car to a neighbour."]),
    ]
    answers = ["Tomas chained his bicycle to the north gate.", "Mei keeps her journal in the reading room.",
               "Ana's doctor has an office on Elm Street.", "Joel lent his car to a neighbour."]
    for (question, facts), right in zip(cases, answers):
        chunks = [_chunk(f, 100 * i) for i, f in enumerate(facts)]
        assert closest(question, chunks, embed).text == right, question
