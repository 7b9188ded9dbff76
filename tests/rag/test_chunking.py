from longrecall.rag.chunking import Chunk, chunk_sentences, chunk_tokens, join_chunks, pack_sentences, sentence_spans, with_token_counts

TEXT = 'First one. Second "quoted." Third!\n\nFourth line? Fifth 3.14 stays one. Sixth'


def test_sentence_spans_cover_every_sentence_in_order():
    spans = sentence_spans(TEXT)
    assert [TEXT[s:e] for s, e in spans] == ["First one.", 'Second "quoted."', "Third!", "Fourth line?", "Fifth 3.14 stays one.", "Sixth"]


def test_sentence_chunks_keep_spans_indices_and_overlap():
    chunks = chunk_sentences(TEXT, n=3, overlap=1)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert TEXT[c.start : c.end] == c.text
    assert chunks[0].text.startswith("First") and chunks[0].text.endswith("Third!")
    assert chunks[1].text.startswith("Third!")  # one shared sentence
    assert chunks[-1].text.endswith("Sixth")


def test_token_chunks_respect_size_overlap_and_spans(tok):
    text = " ".join(f"Sentence number {i} is here." for i in range(60))
    chunks = chunk_tokens(text, tok, size=32, overlap=8)
    assert all(c.n_tokens <= 32 for c in chunks) and chunks[0].n_tokens == 32
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:]))  # overlapping windows
    assert chunks[-1].end == len(text)
    n_total = len(tok(text, add_special_tokens=False)["input_ids"])
    assert sum(c.n_tokens for c in chunks) == n_total + 8 * (len(chunks) - 1)


def test_token_counts_match_tokenizer(tok):
    chunks = with_token_counts(TEXT, chunk_sentences(TEXT, 1, 0), tok)
    assert sum(c.n_tokens for c in chunks) <= len(tok(TEXT, add_special_tokens=False)["input_ids"])
    assert all(c.n_tokens > 0 for c in chunks)


def test_join_merges_overlaps_in_document_order():
    chunks = chunk_sentences(TEXT, n=2, overlap=1)
    picked = [chunks[3], chunks[0], chunks[1]]  # out of order, 0 and 1 overlap
    out = join_chunks(TEXT, picked)
    assert out.split("\n\n")[0] == TEXT[chunks[0].start : chunks[1].end]
    assert out.count("Second") == 1 and out.index("First") < out.index("Fourth")


def test_pack_sentences_bounds_length_and_covers_text():
    text = "Short one. " * 50 + "x" * 2000 + " tail."
    spans = list(pack_sentences(text, max_chars=100, base=1000))
    assert all(e - s <= 100 for s, e in spans)
    assert spans == sorted(spans) and spans[0][0] == 1000
    covered = "".join(text[s - 1000 : e - 1000] for s, e in spans).replace(" ", "")
    assert covered == text.replace(" ", "")


def test_chunk_identity_and_order_keys():
    a, b = Chunk("x", 5, 6, 1, doc_id=2), Chunk("x", 5, 6, 1, doc_id=2, score=3.0)
    assert a.key == b.key == (2, 1)
