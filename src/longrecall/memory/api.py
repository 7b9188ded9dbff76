"""Memory: add text without end to a durable store, ask questions answered from what it retrieves (and a model).

    longrecall memory add notes.txt            # or: cat big.txt | longrecall memory add -
    longrecall memory ask "Which room is Alice's locker in?" --no-generate
"""
from __future__ import annotations

import codecs
import os
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import UserError
from ..rag.chunking import Chunk, sentence_spans
from ..rag.multihop import STRATEGIES, ranked_for
from ..rag.retrievers import rrf
from .store import MemoryStore, SQLiteStore

PIECE_BYTES = 1 << 20  # files are read 1 MiB at a time: a 10M-token file never sits in memory whole
Generator = Callable[[str], str]  # prompt -> answer text
SYSTEM = "You answer questions using only the notes you are given. Answer briefly."


def default_store_path() -> str:
    """$LONGRECALL_MEMORY, else memory.db in the longrecall cache folder (~/.cache/longrecall)."""
    from ..models import cache_dir

    return os.environ.get("LONGRECALL_MEMORY") or str(cache_dir() / "memory.db")


def open_store(path: str | os.PathLike | None = None, create: bool = True) -> MemoryStore:
    """A postgresql:// DSN opens a PostgresStore; anything else is a SQLite file path (created unless create=False)."""
    path = str(path or default_store_path())
    if path.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(path)
    path = os.path.expanduser(path)
    if not create and not os.path.exists(path):
        raise UserError(f"no memory at {path}: add text first with `longrecall memory add FILE --store {path}`")
    return SQLiteStore(path)


def read_pieces(path: str | os.PathLike, piece_bytes: int = PIECE_BYTES) -> Iterator[str]:
    """Decode a file (or '-' for stdin) as UTF-8 piece by piece; binary input is a UserError naming the fix."""
    name = "stdin" if str(path) == "-" else str(path)
    if name != "stdin" and not Path(path).is_file():
        raise UserError(f"{name} is not a file: check the path (use - to read stdin)")
    decoder = codecs.getincrementaldecoder("utf-8")()
    fh = sys.stdin.buffer if name == "stdin" else open(path, "rb")
    try:
        while True:
            raw = fh.read(piece_bytes)
            if b"\x00" in raw:
                raise UserError(f"{name} looks binary (it has NUL bytes): pass a UTF-8 text file")
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError:
                raise UserError(f"{name} is not UTF-8 text (binary file?): convert it to UTF-8 text first") from None
            if text:
                yield text
            if not raw:
                return
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


class StoreSearcher:
    """The Searcher that multi-hop and find-all need, over a store: FTS5/tsvector, fused with vectors when present."""

    def __init__(self, store: MemoryStore, embedder: Callable | None = None):
        self.store, self.embedder = store, embedder

    def search(self, query: str, k: int) -> list[Chunk]:
        lexical = self.store.search_bm25(query, 4 * k)
        if self.embedder is None:
            return lexical[:k]
        dense = self.store.search_vector(self.embedder([query])[0], 4 * k)
        pool = {c.key: c for c in dense + lexical}
        keys = list(pool)
        pos = {key: i for i, key in enumerate(keys)}
        scores = rrf([[pos[c.key] for c in lexical], [pos[c.key] for c in dense]], len(keys))
        order = np.argsort(-scores, kind="stable")[:k]
        return [replace(pool[keys[i]], score=float(scores[i])) for i in order]

    def containing(self, phrase: str, limit: int) -> list[Chunk]:
        """Chunks holding the phrase, cut down to the sentences that hold it: a followed link or one of many
        needles costs a sentence of the context budget, not a whole chunk."""
        hits = self.store.search_bm25(phrase, limit, match="phrase") if limit > 0 else []
        return [narrow(c, phrase) for c in hits]

    def count(self, phrase: str) -> int:
        return self.store.count(phrase, match="phrase")


def narrow(chunk: Chunk, phrase: str) -> Chunk:
    """The chunk reduced to its sentences that contain `phrase` (whole chunk if the index matched it otherwise)."""
    pat = re.compile(r"(?<!\w)" + re.escape(phrase.lower()) + r"(?!\w)")
    spans = [(s, e) for s, e in sentence_spans(chunk.text) if pat.search(chunk.text[s:e].lower())]
    if not spans:
        return chunk
    s, e = spans[0][0], spans[-1][1]
    return replace(chunk, text=chunk.text[s:e], start=chunk.start + s, end=chunk.start + e)


@dataclass
class Answer:
    question: str
    context: str
    chunks: list[Chunk] = field(default_factory=list)
    answer: str | None = None


def fit_chars(ranked: Sequence[Chunk], budget_chars: int) -> list[Chunk]:
    """Best-ranked chunks while their text fits budget_chars, then in document order."""
    kept, used = [], 0
    for c in ranked:
        if used + len(c.text) <= budget_chars:
            kept.append(c)
            used += len(c.text) + 2
    return sorted(kept, key=lambda c: (c.doc_id, c.start))


def join_in_order(chunks: Sequence[Chunk]) -> str:
    """Adjacent chunks of one document run on with a space; gaps between them become a blank line."""
    out, prev = [], None
    for c in chunks:
        adjacent = prev is not None and prev.doc_id == c.doc_id and prev.index + 1 == c.index
        out.append((" " if adjacent else "\n\n") + c.text if out else c.text)
        prev = c
    return "".join(out)


def build_prompt(question: str, context: str) -> str:
    return f"Notes:\n{context}\n\nQuestion: {question}\nAnswer:"


def default_generator(model: str = "default", max_new_tokens: int = 64) -> Generator:
    """Greedy answers from the embedded model (loaded on first use); tests inject their own callable instead."""
    from ..models import load_model, load_tokenizer

    tok, lm = load_tokenizer(model), load_model(model)

    def generate(prompt: str) -> str:
        import torch

        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = lm.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    return generate


class Memory:
    """A long-term memory over one store. embedder: "auto" (load MiniLM when vectors are needed), None, or a callable."""

    def __init__(self, path: str | os.PathLike | None = None, embedder="auto", generator: Generator | None = None, store: MemoryStore | None = None):
        self.store = store if store is not None else open_store(path)
        self._embedder, self._generator = embedder, generator

    def embedder(self) -> Callable | None:
        if self._embedder == "auto":
            from ..rag.retrievers import load_embedder

            self._embedder = load_embedder()  # a model that cannot load raises UserError naming the fix
        return self._embedder

    def add(self, text_or_file: str | os.PathLike, source: str | None = None, embed: bool = False) -> int:
        """Add a text, or a file (a Path, or a str naming an existing file); embed=True also stores vectors now."""
        is_file = isinstance(text_or_file, os.PathLike) or (
            isinstance(text_or_file, str) and "\n" not in text_or_file and len(text_or_file) < 4096 and os.path.isfile(text_or_file)
        )
        if is_file:
            pieces, source = read_pieces(text_or_file), source or str(text_or_file)
        else:
            from .store import checked_text

            pieces = [checked_text(text_or_file)]
        embedder = self.embedder() if embed else None
        if embed and embedder is None:
            raise UserError("embed=True needs an embedder: create Memory(embedder='auto') or pass a callable")
        return self.store.add_stream(pieces, source, embedder)

    def embed_pending(self, batch: int = 256, limit: int | None = None) -> int:
        """Compute vectors for chunks that have none (the slow part of ingest, ~19 chunks/s/core); returns how many."""
        done, embed = 0, self.embedder()
        while limit is None or done < limit:
            rows = self.store.pending_vectors(batch if limit is None else min(batch, limit - done))
            if not rows:
                break
            self.store.set_vectors([i for i, _ in rows], embed([t for _, t in rows]))
            done += len(rows)
        return done

    def ask(self, question: str, k: int = 6, generate: bool = True, budget_chars: int = 6000, strategy: str = "auto") -> Answer:
        """Retrieve (hybrid when vectors exist, multi-hop, find-all for all/every questions) and optionally answer."""
        if not question or not question.strip():
            raise UserError("the question is empty: ask something, e.g. longrecall memory ask \"Who met Alice?\"")
        if strategy not in STRATEGIES:
            raise UserError(f"unknown strategy '{strategy}': use one of {', '.join(STRATEGIES)}")
        if self.store.is_empty():
            raise UserError("the memory is empty: add text first with `longrecall memory add FILE`")
        embedder = self.embedder() if self._embedder is not None and self.store.has_vectors() else None
        ranked = ranked_for(question, StoreSearcher(self.store, embedder), strategy, k)
        chunks = fit_chars(ranked, budget_chars)
        result = Answer(question, join_in_order(chunks), chunks)
        if generate:
            gen = self._generator or default_generator()
            result.answer = gen(build_prompt(question, result.context))
        return result

    def close(self) -> None:
        self.store.close()


def _store_arg(p) -> None:
    p.add_argument("--store", default=None, help="SQLite file or postgresql:// DSN (default $LONGRECALL_MEMORY or ~/.cache/longrecall/memory.db)")


def add_add_arguments(p) -> None:
    """Arguments of `longrecall memory add`."""
    p.add_argument("file", help="UTF-8 text file to add, or - to read stdin (streamed, any size)")
    p.add_argument("--source", default=None, help="label stored with the document (default: the file name)")
    p.add_argument("--embed", action="store_true", help="also compute MiniLM vectors now (slow on CPU: ~2k tokens/s/core)")
    _store_arg(p)


def add_ask_arguments(p) -> None:
    """Arguments of `longrecall memory ask`."""
    p.add_argument("question")
    p.add_argument("-k", type=int, default=6, help="chunks retrieved per query")
    p.add_argument("--budget-chars", type=int, default=6000, help="most characters of retrieved text to keep")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES)
    p.add_argument("--no-generate", action="store_true", help="print the retrieved text instead of a model's answer")
    _store_arg(p)


def add_main(args) -> int:
    t0 = time.time()
    mem = Memory(args.store, embedder="auto" if args.embed else None)
    try:
        path = "-" if args.file == "-" else Path(args.file)
        doc = mem.store.add_stream(read_pieces(path), args.source or ("stdin" if args.file == "-" else str(path)), mem.embedder() if args.embed else None)
        st = mem.store.stats()
        print(f"added document {doc} in {time.time() - t0:.1f}s; the store now has {st['documents']} documents, {st['chunks']} chunks, {st['vectors']} vectors")
    finally:
        mem.close()
    return 0


def ask_main(args) -> int:
    mem = Memory(store=open_store(args.store, create=False))
    try:
        result = mem.ask(args.question, k=args.k, generate=not args.no_generate, budget_chars=args.budget_chars, strategy=args.strategy)
    finally:
        mem.close()
    print(result.context if args.no_generate else result.answer)
    return 0
