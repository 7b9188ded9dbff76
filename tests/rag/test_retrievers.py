import hashlib

import numpy as np
import pytest

from longrecall.errors import UserError
from longrecall.rag import ChunkIndex, build_rag_context, chunk_sentences, load_embedder, retrieve, rrf, terms
from longrecall.rag.retrievers import fit_budget


TEXT = "Cats purr when happy. Dogs bark at the mailman. Cows moo in the field. The mailman fears dogs. Birds sing."


def fake_embedder(texts):
    """Deterministic bag-of-words hashing: shares words -> similar vectors. Raises on nothing."""
    out = np.zeros((len(texts), 64), np.float32)
    for i, t in enumerate(texts):
        for w in terms(t):
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_terms_drop_stopwords_and_case():
    assert terms("What does the Mailman fear, and WHY?") == ["mailman", "fear"]


def test_bm25_returns_best_k_in_document_order():
    chunks = chunk_sentences(TEXT, 1, 0)
    got = retrieve("mailman dogs", chunks, k=2)
    assert [c.index for c in got] == [1, 3]  # both mailman sentences, in document order
    assert all(c.score > 0 for c in got)


def test_nothing_matching_returns_nothing():
    assert retrieve("zebra", chunk_sentences(TEXT, 1, 0), k=3) == []


def test_rrf_rewards_agreement():
    s = rrf([[0, 1, 2], [1, 0, 2], [1, 2]], n=4)
    assert s.argmax() == 1 and s[3] == 0 and s[2] > s[0]  # 2 is ranked by all three


def test_hybrid_and_dense_with_injected_embedder():
    chunks = chunk_sentences(TEXT, 1, 0)
    dense = retrieve("cows field", chunks, 1, method="dense", embedder=fake_embedder)
    hybrid = retrieve("cows field", chunks, 1, method="hybrid", embedder=fake_embedder)
    assert dense[0].index == hybrid[0].index == 2


def test_containing_is_whole_word_and_case_insensitive():
    index = ChunkIndex(chunk_sentences("Room B12 is here. Room B123 is not. room b12 again.", 1, 0))
    assert [c.index for c in index.containing("B12", 10)] in ([0, 2], [2, 0])
    assert index.count("b12") == 2 and index.count("B1") == 0


def test_unknown_method_is_a_user_error():
    with pytest.raises(UserError, match="bm25"):
        ChunkIndex([], method="magic")


def test_missing_embedding_model_is_a_user_error_naming_the_fix(tmp_path):
    with pytest.raises(UserError, match="pip install"):
        load_embedder.__wrapped__(str(tmp_path))


def test_build_rag_context_fits_budget_and_keeps_order(tok, synth):
    text, chains = synth.chain_text(seed=1)
    question = f"Which room is {chains[0]['name']}'s locker in?"
    for budget in (40, 200):
        out = build_rag_context(text, question, tok, budget_tokens=budget)
        assert 0 < len(tok(out, add_special_tokens=False)["input_ids"]) <= budget
        pieces = out.split("\n\n")
        positions = [text.index(p) for p in pieces]
        assert positions == sorted(positions)
    assert chains[0]["facts"][0] in build_rag_context(text, question, tok, 200)


def test_fit_budget_drops_worst_ranked_first(tok):
    chunks = chunk_sentences(TEXT, 1, 0, tokenizer=tok)
    ranked = [chunks[4], chunks[0], chunks[2]]
    want = "Cats purr when happy.\n\nBirds sing."
    budget = len(tok(want, add_special_tokens=False)["input_ids"])
    assert fit_budget(TEXT, ranked, tok, budget_tokens=budget) == want
    assert fit_budget(TEXT, ranked, tok, budget_tokens=budget - 1) == "Birds sing."
