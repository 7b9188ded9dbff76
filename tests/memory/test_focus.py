"""The reader sees the retrieved sentences that bear on the question, connected hop by hop, with true offsets."""
from __future__ import annotations

from longrecall.memory.api import Memory
from longrecall.memory.focus import focus, marks
from longrecall.rag.chunking import Chunk

JUNK = "The fastapi dev server reloads on change. Port 8000 is already occupied. Use a clean virtual environment."


def _chunk(text: str, start: int = 0, index: int = 0) -> Chunk:
    return Chunk(text=text, start=start, end=start + len(text), index=index, doc_id=1)


def _count(text: str):
    return lambda phrase: text.lower().count(phrase.lower())


def test_a_named_key_keeps_only_its_sentence():
    text = f"{JUNK} Remember that brave-otter's vault combination is 4417. {JUNK}"
    kept = focus("Give the vault combination for brave-otter.", [_chunk(text)], _count(text))
    assert [c.text for c in kept] == ["Remember that brave-otter's vault combination is 4417."]
    assert text[kept[0].start:kept[0].end] == kept[0].text  # offsets point into the document


def test_a_chain_is_followed_through_traced_entities_connected_to_the_question():
    facts = ["Delia left the toolbox inside locker 5546.", "Locker 5546 was moved to room S903.",
             "Rooms of Larkspur Centre include S903.", "Chardet detects encodings in Curio streams."]
    text = " ".join([JUNK, facts[0], JUNK, facts[1], facts[3], facts[2]])
    trace = [{"hop": 0, "via": []}, {"hop": 1, "via": ["S903", "Chardet"]}, {"hop": 2, "via": ["5546", "Curio"]}]
    kept = focus("Someone's toolbox ended up in Larkspur Centre. Who does it belong to?", [_chunk(text)], _count(text), trace)
    assert [c.text for c in kept] == facts[:2] + [facts[2]]  # document order; the unconnected Chardet line is not kept


def test_a_name_opening_the_question_is_a_key_and_question_words_are_not():
    text = "Amara tucked their stroller into the conservatory. Where is the station? Give it back, please."
    assert marks("Amara needs the pram back. Where is it?", _count(text)) == ["Amara"]
    assert marks("Give it to me. Where is it?", _count(text)) == []
    assert focus("Give it to me.", [_chunk(text)], _count(text)) == []


def test_memory_ask_shows_the_reader_focused_evidence_or_whole_chunks(tmp_path):
    doc = " ".join([JUNK] * 3 + ["Remember that brave-otter's vault combination is 4417."] + [JUNK] * 3)
    mem = Memory(tmp_path / "m.db", embedder=None)
    mem.add(doc, source="notes")
    seen = []
    mem._generator = lambda prompt: seen.append(prompt) or "4417"
    a = mem.ask("Give the vault combination for brave-otter.")
    assert a.context == "Remember that brave-otter's vault combination is 4417."
    assert all(doc[c.start:c.end] == c.text for c in a.chunks) and "fastapi" not in seen[-1]
    whole = mem.ask("Give the vault combination for brave-otter.", focus=False)
    assert "brave-otter" in whole.context and "fastapi" in whole.context
    mem.close()


def test_a_question_about_names_the_memory_never_mentions_is_not_answered(tmp_path):
    import pytest

    from longrecall.errors import NotFound
    from longrecall.memory.focus import holds_none, names

    assert names("Someone's umbrella ended up in the city of Eastwick Falls. Who does it belong to?") == ["Eastwick Falls"]
    assert names("Kasper wants the umbrella back. Give it.") == ["Kasper"]
    text = "Kofi keeps the violin in locker 4417. The falls are loud."
    assert holds_none("Where did Eastwick Falls go?", _count(text)) == ["Eastwick Falls"]
    assert holds_none("Where does Kofi keep the violin?", _count(text)) == []
    assert holds_none("List every hidden number.", _count(text)) == []  # names nothing: retrieval decides
    mem = Memory(tmp_path / "m.db", embedder=None)
    mem.add(text, source="notes")
    mem._generator = lambda prompt: "locker 4417"
    with pytest.raises(NotFound, match="does not mention Cyrus"):
        mem.ask("If you wanted Cyrus's hat, where would you go?")
    mem.close()


def test_question_openers_of_every_wording_are_not_names():
    """Each training question form (hundreds, from the phrasing grammar) asked about a key the memory holds is
    answered, never refused as 'not in the memory' because of its opening word ("According", "Reading", "Quick")."""
    from longrecall.memory.focus import holds_none
    from longrecall.niah import grammar as G

    text = "Note that the door code for brave-otter is 4417. The keepers met at noon."
    for form in G.pools()["question_one"] + G.pools()["question_every"]:
        q = form.format(name="door code", names="door codes", key="brave-otter")
        assert holds_none(q, _count(text)) == [], q


def test_hop_order_reads_a_chain_link_by_link():
    facts = ["Delia left the toolbox inside locker 5546.", "Locker 5546 was moved to room S903.",
             "Rooms of Larkspur Centre include S903."]
    text = " ".join([JUNK, facts[2], JUNK, facts[1], JUNK, facts[0]])  # the document holds the chain backwards
    trace = [{"hop": 0, "via": []}, {"hop": 1, "via": ["5546"]}, {"hop": 2, "via": ["S903"]}]
    q = "Where did Delia's toolbox end up? Name the centre."
    assert [c.text for c in focus(q, [_chunk(text)], _count(text), trace)] == facts[::-1]
    assert [c.text for c in focus(q, [_chunk(text)], _count(text), trace, order="hops")] == facts
