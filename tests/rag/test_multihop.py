import numpy as np
import pytest

from longrecall.errors import UserError
from longrecall.rag import ChunkIndex, chunk_sentences, find_all, heuristic_entities, multihop_retrieve, rag_answer_context, ranked_for, wants_all


def _texts(chunks):
    return " ".join(c.text for c in chunks)


def test_heuristic_entities_skip_what_the_question_says():
    got = heuristic_entities("Which room is Alice's locker in?", "Alice's locker is locker 4417. Locker 4417 is in room B12.")
    assert got == ["4417", "B12"]
    assert heuristic_entities("q", "VAR QWERT = VAR ASDFG. id 0f8fad5b-d9cb-469f-a165-70867728950e, key brave-lion") == [
        "QWERT", "ASDFG", "0f8fad5b-d9cb-469f-a165-70867728950e", "brave-lion"]


@pytest.mark.parametrize("seed", range(8))
def test_multihop_follows_chain_from_either_end_where_topk_does_not(seed, synth):
    text, chains = synth.chain_text(seed)
    index = ChunkIndex(chunk_sentences(text, 1, 0))
    c = chains[0]
    forward = _texts(multihop_retrieve(f"Which wing is {c['name']}'s locker in?", index, k=3))
    assert all(f in forward for f in c["facts"])
    backward = _texts(multihop_retrieve(f"Whose locker is in room {c['room']}?", index, k=3))
    assert c["facts"][0] in backward and c["facts"][1] in backward


def test_topk_misses_the_hops_multihop_finds(synth):
    hits_topk = hits_multi = 0
    for seed in range(8):
        text, chains = synth.chain_text(seed)
        index = ChunkIndex(chunk_sentences(text, 1, 0))
        q = f"Which wing is {chains[0]['name']}'s locker in?"
        hits_topk += all(f in _texts(index.search(q, 3)) for f in chains[0]["facts"])
        hits_multi += all(f in _texts(multihop_retrieve(q, index, k=3)) for f in chains[0]["facts"])
    assert hits_multi == 8 and hits_topk <= 2


@pytest.mark.parametrize("seed", range(4))
def test_multihop_traces_variables(seed, synth):
    text, chains = synth.vartrack_text(seed, hops=4)
    index = ChunkIndex(chunk_sentences(text, 1, 0))
    got = _texts(multihop_retrieve(f"Find all variables that are assigned the value {chains[0]['value']}.", index, k=2, max_hops=5))
    assert all(f"VAR {n} " in got for n in chains[0]["names"])
    assert not any(f"VAR {n} " in got for n in chains[1]["names"][1:])  # the other chain is not followed


@pytest.mark.parametrize("seed", range(4))
def test_find_all_returns_every_needle_and_no_distractor(seed, synth):
    text, values = synth.needles_text(seed, n=6)
    index = ChunkIndex(chunk_sentences(text, 1, 0))
    q = "What are all the special magic numbers for brave-lion mentioned in the provided text?"
    got = _texts(find_all(q, index))
    assert all(v in got for v in values["brave-lion"])
    assert not any(v in got for v in values["calm-tiger"])
    assert sum(v in _texts(index.search(q, 4)) for v in values["brave-lion"]) < 6  # a fixed top-k cannot


def test_find_all_unions_several_keys_and_respects_the_bound(synth):
    text, values = synth.needles_text(0, n=6)
    index = ChunkIndex(chunk_sentences(text, 1, 0))
    both = _texts(find_all("List the special magic numbers for brave-lion and calm-tiger.", index))
    assert all(v in both for vs in values.values() for v in vs)
    assert len(find_all("List the special magic numbers for brave-lion.", index, max_chunks=3)) == 3


def test_find_all_falls_back_to_rarest_word_then_to_relative_threshold():
    index = ChunkIndex(chunk_sentences("apples are red. apples and pears. bananas. grapes are green.", 1, 0))
    assert [c.index for c in find_all("which fruit is red like apples", index)] == [0]  # "red": the rarest word present
    vectors = {"apples are red.": [1, 0], "apples and pears.": [0.8, 0.6], "bananas.": [0, 1], "grapes are green.": [0.1, 0.99], "crimson fruit?": [1, 0]}

    def embed(texts):
        return np.array([vectors[t] for t in texts], np.float32)  # KeyError on any text it was not written for

    dense = ChunkIndex(index.chunks, method="dense", embedder=embed)
    assert sorted(c.index for c in find_all("crimson fruit?", dense, rel_threshold=0.5)) == [0, 1]


def test_wants_all_and_unknown_strategy():
    assert wants_all("List every value") and not wants_all("Which room?")
    with pytest.raises(UserError, match="multihop"):
        ranked_for("q", ChunkIndex([]), "nope")


def test_rag_answer_context_strategies_on_a_chain_sample(tok, synth):
    text, chains = synth.chain_text(3)
    c = chains[0]
    sample = {"context": text, "question": f"Which wing is {c['name']}'s locker in?", "task": "chain"}
    for method in ("multihop", "auto"):
        out = rag_answer_context(sample, tok, method=method, budget=300, k=3)
        assert all(f in out for f in c["facts"])
        assert len(tok(out, add_special_tokens=False)["input_ids"]) <= 300
    filled = rag_answer_context(sample, tok, method="topk", budget=300, k=3, fill=True)
    assert len(tok(filled, add_special_tokens=False)["input_ids"]) > 200


def test_rag_answer_context_find_all_sample(tok, synth):
    text, values = synth.needles_text(5)
    sample = {"context": text, "question": "What are all the special magic numbers for brave-lion?", "task": "all_needles"}
    out = rag_answer_context(sample, tok, method="auto", budget=400)
    assert all(v in out for v in values["brave-lion"])


def test_a_request_opening_the_question_is_not_taken_for_the_thing_asked():
    """'Go through' is rarer in a long memory than the kind asked for, and must not become the find-all key."""
    filler = ["Go through the installer steps once.", "We go through the logs daily."]
    needles = [f"The vault combination of key-{i} = {5000 + i}." for i in range(5)]
    text = " ".join(filler + needles + ["The vault combination rule applies.", "More vault combination notes.", "Each vault combination is new."])
    index = ChunkIndex(chunk_sentences(text, 1, 0))
    got = _texts(find_all("Go through the text and write down every vault combination you find.", index))
    assert all(str(5000 + i) in got for i in range(5)) and "installer" not in got
