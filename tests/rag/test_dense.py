"""The packaged all-MiniLM-L6-v2, loaded offline: a paraphrase with no shared word is found by dense and hybrid."""
import numpy as np
import pytest

from longrecall.rag import chunk_sentences, load_embedder, retrieve

TEXT = "The invoice was paid on Monday. My automobile broke down on the highway. The cat slept on the sofa."


@pytest.mark.integration
def test_packaged_minilm_loads_offline_and_finds_paraphrases(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embed = load_embedder()
    v = embed(["a car", "an automobile", "a banana"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    chunks = chunk_sentences(TEXT, 1, 0)
    assert retrieve("my car stopped working", chunks, 1, method="dense")[0].index == 1
    assert retrieve("my car stopped working", chunks, 1, method="hybrid")[0].index == 1
    assert retrieve("my car stopped working", chunks, 1, method="bm25") == []  # no shared word: BM25 alone finds nothing
