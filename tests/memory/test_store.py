"""The MemoryStore interface, the same tests on SQLite and PostgreSQL."""
import numpy as np
import pytest

from longrecall.errors import UserError
from longrecall.memory.store import SCHEMA_VERSION, stream_chunks, topk_cosine

DOC = (
    "Alice's locker is locker 4417. The sky is blue over the harbour. Locker 4417 is in room B12. "
    "One of the special magic numbers for brave-lion is: 1234567. Rain fell all day. "
) * 3


def test_add_chunks_and_full_text_search(store_factory):
    s = store_factory(chunk_chars=60, batch_chunks=4)
    d1 = s.add_document(DOC, source="a.txt")
    d2 = s.add_document("Bruno keeps a red bicycle in room C7.")
    assert d2 != d1
    chunks = list(s.chunks(d1))
    assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) > 4
    assert all(DOC[c.start : c.end] == c.text and c.doc_id == d1 for c in chunks)
    hits = s.search_bm25("which room is the locker in", 3)
    assert hits and "Locker 4417 is in room B12." in hits[0].text
    assert hits == sorted(hits, key=lambda c: -c.score)
    assert [c.doc_id for c in s.search_bm25("bicycle", 5)] == [d2]
    assert s.count("4417") == 6 and s.count("room B12") == 3 and s.count("brave-lion") == 3 and s.count("B1") == 0
    assert s.count("bicycle locker", match="all") == 0 and s.count("bicycle locker", match="any") > 1
    assert s.search_bm25("the of and", 3) == []  # stopwords only: nothing to match, no syntax error
    assert s.search_bm25('") OR NEAR(*', 3) == []  # user text never reaches the query syntax
    st = s.stats()
    assert (st["documents"], st["incomplete_documents"], st["chunks"], st["vectors"]) == (2, 0, len(chunks) + 1, 0)
    assert st["schema"] == SCHEMA_VERSION and st["bytes"] > 0
    assert not s.is_empty() and not s.has_vectors()


def test_vectors_added_later_are_searched_by_cosine(store_factory):
    s = store_factory(chunk_chars=20)
    s.add_document("Cats purr. Dogs bark loudly. Cows moo in fields.")
    pending = s.pending_vectors(100)
    assert len(pending) == 3
    vecs = np.eye(3, 8, dtype=np.float32)
    s.set_vectors([i for i, _ in pending], vecs)
    assert s.has_vectors() and s.pending_vectors(10) == []
    hits = s.search_vector(np.eye(1, 8, 1, dtype=np.float32)[0] + 0.1, 2)
    assert hits[0].text == "Dogs bark loudly." and hits[0].score > hits[1].score


def test_empty_or_nul_text_is_refused_and_store_survives_reopen(store_factory):
    s = store_factory()
    with pytest.raises(UserError, match="empty"):
        s.add_document("   \n ")
    with pytest.raises(UserError, match="NUL"):
        s.add_document("text\x00more")
    s.add_document("Kept sentence.")
    s.close()
    assert store_factory().search_bm25("kept", 1)[0].text == "Kept sentence."


def test_failure_mid_stream_removes_the_partial_document(store_factory):
    s = store_factory(chunk_chars=20, batch_chunks=2)

    def pieces():
        yield "First sentence here. Second one too. Third is fine. " * 4
        raise UserError("bad input later")

    with pytest.raises(UserError, match="bad input"):
        s.add_stream(pieces())
    assert s.is_empty() and s.stats()["documents"] == 0


def test_newer_schema_is_refused(store_factory):
    s = store_factory()
    table = "schema_version" if store_factory.backend == "sqlite" else "longrecall_schema"
    s.db.execute(f"UPDATE {table} SET version = {SCHEMA_VERSION + 1}")
    s.close()
    with pytest.raises(UserError, match="newer longrecall"):
        store_factory()


def test_not_a_database_is_a_user_error(tmp_path):
    from longrecall.memory.store import SQLiteStore

    bad = tmp_path / "x.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="not a usable memory store"):
        SQLiteStore(bad)


def test_stream_chunks_cover_the_text_whatever_the_piece_size():
    text = "".join(f"Sentence {i} says {'x' * (i % 7)}. " for i in range(200)) + "tail without end"
    for size in (13, 100, 10_000):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        spans = list(stream_chunks(pieces, max_chars=80))
        assert all(text[s:e] == t and e - s <= 80 for s, e, t in spans)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
        assert "".join(t for _, _, t in spans).replace(" ", "") == text.replace(" ", "")


def test_topk_cosine_over_batches_equals_one_pass():
    rng = np.random.default_rng(0)
    mat = rng.normal(size=(100, 8)).astype(np.float32)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    q = rng.normal(size=8)
    ids = np.arange(100)
    one = topk_cosine([(ids, mat)], q, 5)
    batched = topk_cosine([(ids[i : i + 7], mat[i : i + 7]) for i in range(0, 100, 7)], q, 5)
    assert [i for i, _ in one] == [i for i, _ in batched] == list(np.argsort(-(mat @ q))[:5])
