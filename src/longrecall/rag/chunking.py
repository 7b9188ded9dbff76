"""Split a text into chunks that remember their char span and index, so retrieved chunks go back in document order.

    python -c "from longrecall.rag.chunking import chunk_sentences; print(chunk_sentences('A b. C d. E f.', n=2, overlap=1))"
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Iterator

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by space, or at a newline run.
_SENT_END = re.compile(r"""(?<=[.!?])\s+|(?<=[.!?]["')\]])\s+|\n\s*""")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: text == document[start:end]; (doc_id, index) identifies it, (doc_id, start) orders it."""

    text: str
    start: int
    end: int
    index: int
    n_tokens: int = 0
    doc_id: int = 0
    score: float = 0.0

    @property
    def key(self) -> tuple[int, int]:
        return (self.doc_id, self.index)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Char spans of the sentences of `text` (whitespace between sentences belongs to no span)."""
    spans, pos = [], 0
    for m in _SENT_END.finditer(text):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = m.end()
    if pos < len(text) and text[pos:].strip():
        spans.append((pos, len(text.rstrip())))
    return spans


def chunk_sentences(text: str, n: int = 3, overlap: int = 1, tokenizer=None) -> list[Chunk]:
    """Chunks of `n` sentences, consecutive chunks sharing `overlap` sentences; token counts if a tokenizer is given."""
    if n < 1 or not 0 <= overlap < n:
        raise ValueError(f"need n >= 1 and 0 <= overlap < n, got n={n} overlap={overlap}")
    spans = sentence_spans(text)
    chunks, step = [], n - overlap
    for i in range(0, max(len(spans) - overlap, 1), step):
        group = spans[i : i + n]
        if not group:
            break
        s, e = group[0][0], group[-1][1]
        chunks.append(Chunk(text[s:e], s, e, len(chunks)))
    return with_token_counts(text, chunks, tokenizer) if tokenizer is not None else chunks


def chunk_tokens(text: str, tokenizer, size: int = 128, overlap: int = 16) -> list[Chunk]:
    """Windows of `size` tokens, consecutive windows sharing `overlap` tokens; spans come from the tokenizer's offsets."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size} overlap={overlap}")
    offsets = _offsets(text, tokenizer)
    chunks, step = [], size - overlap
    for i in range(0, max(len(offsets) - overlap, 1), step):
        window = offsets[i : i + size]
        if not window:
            break
        s, e = window[0][0], window[-1][1]
        chunks.append(Chunk(text[s:e], s, e, len(chunks), n_tokens=len(window)))
    return chunks


def pack_sentences(text: str, max_chars: int = 600, base: int = 0) -> Iterator[tuple[int, int]]:
    """Spans (shifted by `base`) of whole sentences packed up to ~max_chars; a longer sentence is cut at spaces.

    The store uses this: it needs no tokenizer, so ingesting millions of tokens stays cheap."""
    cur_s = cur_e = None
    for s, e in sentence_spans(text):
        while e - s > max_chars:  # an over-long "sentence" (a table, a log line): cut it at a space
            if cur_s is not None:
                yield base + cur_s, base + cur_e
                cur_s = None
            cut = text.rfind(" ", s + max_chars // 2, s + max_chars)
            cut = cut if cut > s else s + max_chars
            yield base + s, base + cut
            s = cut
            while s < e and text[s].isspace():
                s += 1
        if s >= e:
            continue
        if cur_s is not None and e - cur_s > max_chars:
            yield base + cur_s, base + cur_e
            cur_s = None
        cur_s = s if cur_s is None else cur_s
        cur_e = e
    if cur_s is not None:
        yield base + cur_s, base + cur_e


def with_token_counts(text: str, chunks: list[Chunk], tokenizer) -> list[Chunk]:
    """Fill n_tokens by tokenizing the whole text once and counting the tokens that overlap each span.

    Byte-level BPE puts the space before a word into the word's token, so a token may start before the span."""
    offsets = _offsets(text, tokenizer)
    starts, ends = [s for s, _ in offsets], [e for _, e in offsets]
    return [
        Chunk(c.text, c.start, c.end, c.index, bisect.bisect_left(starts, c.end) - bisect.bisect_right(ends, c.start), c.doc_id, c.score)
        for c in chunks
    ]


def join_chunks(text: str, chunks: list[Chunk], sep: str = "\n\n") -> str:
    """The chunks' text in document order, overlapping or touching spans merged so nothing is repeated."""
    merged: list[list[int]] = []
    for c in sorted(chunks, key=lambda c: (c.start, c.end)):
        if merged and c.start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], c.end)
        else:
            merged.append([c.start, c.end])
    return sep.join(text[s:e].strip() for s, e in merged)


def _offsets(text: str, tokenizer) -> list[tuple[int, int]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [(s, e) for s, e in enc["offset_mapping"] if e > s]
