"""Memory: add text without end to a durable store, ask questions answered from what it retrieves (and a model).

    longrecall memory add notes.txt            # or: cat big.txt | longrecall memory add -
    longrecall memory ask "Which room is Alice's locker in?" --no-generate
    longrecall memory list                     # documents, complete or not; longrecall memory forget ID removes one

A document is known by the SHA-256 of its text: adding the same text again is a no-op that says so, and re-running
an interrupted `memory add FILE` resumes the incomplete document instead of adding a second copy.
"""
from __future__ import annotations

import argparse
import codecs
import contextlib
import datetime as dt
import hashlib
import os
import sqlite3
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import NotFound, UserError
from ..rag.chunking import Chunk, sentence_spans
from ..rag.multihop import STRATEGIES, lists_all, ranked_for
from ..rag.retrievers import rrf
from .listing import GROUP, answer_all, read_in_pieces
from .walk import walked
from .store import MemoryStore, SQLiteStore

PIECE_BYTES = 1 << 20  # files are read 1 MiB at a time: a 10M-token file never sits in memory whole
Generator = Callable[[str], str]  # prompt -> answer text
SYSTEM = ("You answer questions using only the notes you are given. Answer briefly. If the notes do not hold the answer, "
          "say that it is not in the notes.")
REPEATS = 8  # search this many times k candidates, so that k stay once copies of one passage are dropped (distinct)
MIN_COSINE = 0.2  # a dense hit below this cosine is unrelated text, not evidence (MiniLM: unrelated pairs score ~0-0.15)


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
    decoder = codecs.getincrementaldecoder("utf-8-sig")()  # a byte-order mark is not text: dropped
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


def file_digest(path: str | os.PathLike, piece_bytes: int = PIECE_BYTES) -> str:
    """SHA-256 of the file's text as stored (UTF-8, without a byte-order mark), read piece by piece."""
    h = hashlib.sha256()
    for piece in read_pieces(path, piece_bytes):
        h.update(piece.encode("utf-8"))
    return h.hexdigest()


def text_digest(text: str) -> str:
    return hashlib.sha256(text.lstrip("\ufeff").encode("utf-8")).hexdigest()


class _Hashing:
    """Pieces passed through while their SHA-256 is taken (stdin cannot be read twice)."""

    def __init__(self, pieces):
        self.pieces, self.h = pieces, hashlib.sha256()

    def __iter__(self):
        for p in self.pieces:
            self.h.update(p.encode("utf-8"))
            yield p

    def hexdigest(self) -> str:
        return self.h.hexdigest()


@dataclass
class Added:
    """What `Memory.add_text` did: status is added, resumed, or exists (same text already complete: nothing added)."""

    doc_id: int
    status: str
    source: str | None = None
    replaced: list[int] = field(default_factory=list)


class StoreSearcher:
    """The Searcher that multi-hop and find-all need, over a store: FTS5/tsvector, fused with vectors when present."""

    def __init__(self, store: MemoryStore, embedder: Callable | None = None):
        self.store, self.embedder = store, embedder

    def search(self, query: str, k: int) -> list[Chunk]:
        lexical = distinct(self.store.search_bm25(query, REPEATS * k))
        if self.embedder is None:
            return lexical[:k]
        dense = distinct([c for c in self.store.search_vector(self.embedder([query])[0], REPEATS * k) if c.score >= MIN_COSINE])
        pool = {c.key: c for c in dense + lexical}
        keys = list(pool)
        pos = {key: i for i, key in enumerate(keys)}
        scores = rrf([[pos[c.key] for c in lexical], [pos[c.key] for c in dense]], len(keys))
        order = np.argsort(-scores, kind="stable")[:k]
        return [replace(pool[keys[i]], score=float(scores[i])) for i in order]

    def containing(self, phrase: str, limit: int) -> list[Chunk]:
        """Chunks holding the phrase, cut down to the sentences that hold it: a followed link or one of many
        needles costs a sentence of the context budget, not a whole chunk."""
        hits = self.store.search_bm25(phrase, REPEATS * limit, match="phrase") if limit > 0 else []
        return distinct([narrow(c, phrase) for c in hits])[:limit]

    def count(self, phrase: str) -> int:
        return self.store.count(phrase, match="phrase")

    def size(self) -> int:
        return self.store.chunk_count()


def distinct(chunks: Sequence[Chunk]) -> list[Chunk]:
    """The first (best) of chunks whose texts are the same up to spacing: a passage the memory holds many times (a
    licence, a re-added page, docs quoted in several files) fills one place of top-k, not all of them. Measured at 1M
    tokens of docs and prose (docs/results/memory): 5 of 50 chain questions got six copies of one docs passage as their
    whole evidence before this."""
    seen: set[str] = set()
    out = []
    for c in chunks:
        key = " ".join(c.text.split()).lower()
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


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
    incomplete: list[dict] = field(default_factory=list)  # documents the context draws on whose add did not finish
    strategy: str = "auto"
    trace: list[dict] = field(default_factory=list)  # multi-hop: per hop, the entities followed and the chunk keys reached
    walk: list[str] = field(default_factory=list)  # the reader's hop-by-hop reading of a chain (memory.walk); answer: its last hop
    onward: list[str] = field(default_factory=list)  # the answers read on to from a middle link (memory.onward); answer: the last
    chosen_from: int = 0  # a one-hop question's evidence: the closest in meaning of this many sentences (memory.closest); 0: all shown

    def warning(self) -> str | None:
        """One line saying which retrieved text comes from an unfinished add, or None."""
        if not self.incomplete:
            return None
        docs = ", ".join(f"{d['id']} ({d['source'] or 'no source'})" for d in self.incomplete)
        first = self.incomplete[0]
        return (f"warning: this answer draws on document {docs}, whose add did not finish (interrupted, or still running): "
                f"re-run `longrecall memory add {first['source'] or 'FILE'}` to complete it, or `longrecall memory forget {first['id']}`")


def fit_chars(ranked: Sequence[Chunk], budget_chars: int, keep_order: bool = False) -> list[Chunk]:
    """Best-ranked chunks while their text fits budget_chars, then in document order (or as ranked: keep_order)."""
    kept, used = [], 0
    for c in ranked:
        if used + len(c.text) <= budget_chars:
            kept.append(c)
            used += len(c.text) + 2
    return kept if keep_order else sorted(kept, key=lambda c: (c.doc_id, c.start))


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


def default_generator(model: str = "default", max_new_tokens: int = 64, adapter: str | None = None) -> Generator:
    """Greedy answers from a model (the embedded one by default, with an adapter folder if given); tests inject
    their own callable instead."""
    from ..models import load_model, load_tokenizer

    tok, lm = load_tokenizer(model), load_model(model, dtype="auto")
    if adapter:
        from ..eval.backends import load_adapter

        lm = load_adapter(lm, adapter, model)

    def generate(prompt: str, cap: int | None = None) -> str:  # cap: this answer's token limit (default max_new_tokens)
        import torch

        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = lm.generate(**enc, max_new_tokens=cap or max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    def many(prompts: Sequence[str], cap: int | None = None, share: bool = True) -> list[str]:
        """Several prompts in one greedy batch (an every-X question's pieces): one decode loop for all, and the
        opening they share (system turn, "Notes:") prefilled once (memory.batched)."""
        from .batched import greedy_batch

        rows = [tok.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}],
                                        add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"] for p in prompts]
        outs = greedy_batch(lm, rows, tok.pad_token_id, cap or max_new_tokens, share=share)
        return [tok.decode(o, skip_special_tokens=True).strip() for o in outs]

    generate.many = many
    return generate


class Memory:
    """A long-term memory over one store. embedder: "auto" (load MiniLM when vectors are needed), None, or a callable.
    ranker: what picks a one-hop question's closest evidence sentence (memory.closest): "auto" (MiniLM, loaded when
    first needed; skipped with a note if it cannot load), None (off), or a callable like an embedder."""

    def __init__(self, path: str | os.PathLike | None = None, embedder="auto", generator: Generator | None = None, store: MemoryStore | None = None,
                 ranker="auto"):
        self.store = store if store is not None else open_store(path)
        self._embedder, self._generator, self._ranker = embedder, generator, ranker

    def ranker(self) -> Callable | None:
        if self._ranker == "auto":
            if callable(self._embedder):
                self._ranker = self._embedder
            else:
                from ..rag.retrievers import load_embedder

                try:
                    self._ranker = load_embedder()
                except UserError as e:
                    print(f"note: one-hop evidence is not ranked by meaning ({e})", file=sys.stderr)
                    self._ranker = None
        return self._ranker

    def embedder(self) -> Callable | None:
        if self._embedder == "auto":
            from ..rag.retrievers import load_embedder

            self._embedder = load_embedder()  # a model that cannot load raises UserError naming the fix
        return self._embedder

    def add(self, text_or_file: str | os.PathLike, source: str | None = None, embed: bool = False) -> int:
        """Add a text, or a file (a Path, or a str naming an existing file); embed=True also stores vectors now.
        Returns the document's id (the existing one when the same text is already stored)."""
        return self.add_text(text_or_file, source, embed).doc_id

    def add_text(self, text_or_file: str | os.PathLike, source: str | None = None, embed: bool = False) -> Added:
        """As add, saying what happened: a new document, an interrupted one resumed, or the same text already there."""
        is_stdin = str(text_or_file) == "-"
        is_file = not is_stdin and (isinstance(text_or_file, os.PathLike) or (
            isinstance(text_or_file, str) and "\n" not in text_or_file and len(text_or_file) < 4096 and os.path.isfile(text_or_file)
        ))
        digest: str | Callable[[], str]
        if is_stdin:
            hashing = _Hashing(read_pieces("-"))
            pieces, source, digest = hashing, source or "stdin", hashing.hexdigest
        elif is_file:
            digest = file_digest(text_or_file)  # also refuses a missing, binary or non-UTF-8 file before anything is stored
            pieces, source = read_pieces(text_or_file), source or str(text_or_file)
        else:
            from .store import checked_text

            text = checked_text(text_or_file).lstrip("\ufeff")
            pieces, digest = [text], text_digest(text)
        embedder = self.embedder() if embed else None
        if embed and embedder is None:
            raise UserError("embed=True needs an embedder: create Memory(embedder='auto') or pass a callable")
        resume = None
        if isinstance(digest, str):
            same = self.store.documents(digest)
            done = [d for d in same if d["complete"]]
            if done:
                return Added(done[0]["id"], "exists", done[0]["source"])
            partial = [d for d in same if d["source"] == source] or same
            resume = partial[0]["id"] if partial else None
        doc_id = self.store.add_stream(pieces, source, embedder, digest=digest, resume=resume)
        final = digest() if callable(digest) else digest
        twins = [d for d in self.store.documents(final) if d["id"] != doc_id]
        if is_stdin and any(d["complete"] for d in twins):  # stdin is hashed as it is read: a copy is only known now
            keep = next(d for d in twins if d["complete"])
            self.store.forget([doc_id])
            return Added(keep["id"], "exists", keep["source"])
        stale = [d["id"] for d in twins if not d["complete"]]  # partial copies of the same text are superseded
        if stale:
            self.store.forget(stale)
        return Added(doc_id, "resumed" if resume is not None else "added", source, stale)

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

    def ask(self, question: str, k: int = 6, generate: bool = True, budget_chars: int = 6000, strategy: str = "auto",
            focus: bool = True, read_group: int | None = GROUP, order: str = "document", read_on: bool = True,
            closest: bool = True) -> Answer:
        """Retrieve (hybrid when vectors exist, multi-hop, find-all for all/every questions) and optionally answer.
        focus: show the reader only the retrieved sentences that bear on the question (memory.focus), not whole chunks.
        read_group: an every-X question's evidence is read this many sentences at a time and the answers merged
        (memory.listing); None reads it all at once. order: the focused evidence in document order, or "hops": in the
        order multi-hop retrieval reached it (a chain read link by link). read_on: when the answer is named by more than
        one evidence sentence (a chain's middle link), read again over those sentences (memory.onward). closest: a
        one-hop question's reader sees only the evidence sentence closest to it in meaning (memory.closest)."""
        if not question or not question.strip():
            raise UserError("the question is empty: ask something, e.g. longrecall memory ask \"Who met Alice?\"")
        if strategy not in STRATEGIES:
            raise UserError(f"unknown strategy '{strategy}': use one of {', '.join(STRATEGIES)}")
        if self.store.is_empty():
            raise UserError("the memory is empty: add text first with `longrecall memory add FILE`")
        if k < 1:
            raise UserError(f"-k {k}: retrieve at least one chunk per query (-k 1 or more)")
        if budget_chars < 1:
            raise UserError(f"--budget-chars {budget_chars}: keep at least one character of retrieved text (e.g. 6000)")
        embedder = self.embedder() if self._embedder is not None and self.store.has_vectors() else None
        trace: list[dict] = []
        searcher = StoreSearcher(self.store, embedder)
        if focus:
            from .focus import holds_none

            missing = holds_none(question, searcher.count)
            if missing:  # the reader is not asked: it would answer from unrelated text
                raise NotFound(f"the memory does not mention {' or '.join(missing)}: not in the memory (add text about it "
                               "with `longrecall memory add FILE`)")
        ranked = ranked_for(question, searcher, strategy, k, trace=trace)
        if not ranked:
            raise NotFound("nothing in the memory matches this question: no answer (add text about it with `longrecall memory add FILE`)")
        chunks = fit_chars(ranked, budget_chars)
        if not chunks:
            raise UserError(f"the best matching chunk is longer than --budget-chars {budget_chars}: raise it (e.g. 6000)")
        kept: list[Chunk] = []
        if focus:
            from .focus import focus as focused

            kept = focused(question, chunks, searcher.count, trace, order=order)
            chunks = fit_chars(kept, budget_chars, keep_order=order == "hops") or chunks  # nothing bears on it: the reader sees the chunks
        chosen_from = 0
        if closest and generate and kept:  # kept: focus found the sentences that bear on the question
            from . import closest as C

            rank = self.ranker() if C.applies(question, strategy, chunks, trace) else None
            if rank is not None:
                chosen_from, chunks = len(chunks), [C.closest(question, chunks, rank)]
        result = Answer(question, join_in_order(chunks), chunks, strategy=strategy, trace=trace, chosen_from=chosen_from)
        used = {c.doc_id for c in chunks}
        result.incomplete = [d for d in self.store.documents() if not d["complete"] and d["id"] in used] if used else []
        if generate:
            gen = self._generator or default_generator()
            if focus and lists_all(question, strategy) and read_group and len(chunks) > read_group:
                result.answer = read_in_pieces(question, chunks, gen, lambda q, part: build_prompt(q, join_in_order(part)), read_group)
            else:
                result.answer, result.walk = walked(gen(build_prompt(question, result.context)))
                if focus and read_on:  # a middle link of a chain: read again around it (memory.onward)
                    from .onward import read_on as onward

                    def again(q: str, near: Sequence[str]) -> str | None:
                        return walked(gen(build_prompt(q, "\n\n".join(near))))[0]

                    result.answer, result.onward = onward(question, [c.text for c in chunks], result.answer, again)
        return result

    def close(self) -> None:
        self.store.close()


def _store_arg(p) -> None:
    p.add_argument("--store", default=None, help="SQLite file or postgresql:// DSN (default $LONGRECALL_MEMORY or ~/.cache/longrecall/memory.db)")


def _positive(flag: str, allow_zero: bool = False):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number, got {text!r}") from None
        if v < (0 if allow_zero else 1):
            raise argparse.ArgumentTypeError(f"{flag} must be {'0' if allow_zero else '1'} or more, got {v}")
        return v

    return parse


def add_add_arguments(p) -> None:
    """Arguments of `longrecall memory add`."""
    p.add_argument("file", help="UTF-8 text file to add, or - to read stdin (streamed, any size)")
    p.add_argument("--source", default=None, help="label stored with the document (default: the file name)")
    p.add_argument("--embed", action="store_true", help="also compute MiniLM vectors now (slow on CPU: ~2k tokens/s/core)")
    _store_arg(p)


def add_ask_arguments(p) -> None:
    """Arguments of `longrecall memory ask`."""
    p.add_argument("question")
    p.add_argument("-k", type=_positive("-k"), default=6, help="chunks retrieved per query (1 or more)")
    p.add_argument("--budget-chars", type=_positive("--budget-chars"), default=6000, help="most characters of retrieved text to keep")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES)
    p.add_argument("--no-generate", action="store_true", help="print the retrieved text instead of a model's answer")
    p.add_argument("--no-focus", action="store_true",
                   help="show the reader whole retrieved chunks, not only the sentences that bear on the question")
    p.add_argument("--reader", default=None, metavar="base|ADAPTER|MODEL",
                   help="who answers: 'base' (the embedded model), an adapter folder or a merged model folder "
                        "(default $LONGRECALL_READER, else reader-v1, the shipped memory reader; reader-v2 names the other one); the output names it")
    p.add_argument("--read-group", type=_positive("--read-group", allow_zero=True), default=GROUP, metavar="N",
                   help=f"an every-X question's evidence is read N sentences at a time and the answers merged "
                        f"(default {GROUP}; 0: all at once)")
    p.add_argument("--no-read-on", action="store_true",
                   help="keep the reader's first answer even when it is a middle link of a chain (by default the sentences "
                        "naming it are read again)")
    p.add_argument("--no-closest", action="store_true",
                   help="show the reader every evidence sentence of a one-hop question (by default only the one closest "
                        "to the question in meaning, ranked by all-MiniLM-L6-v2)")
    p.add_argument("--json", action="store_true", help="print the answer, evidence and hop trace as JSON")
    p.add_argument("--no-evidence", action="store_true", help="print only the answer (or the retrieved text)")
    _store_arg(p)


def add_list_arguments(p) -> None:
    """Arguments of `longrecall memory list`."""
    _store_arg(p)


def add_forget_arguments(p) -> None:
    """Arguments of `longrecall memory forget`."""
    p.add_argument("ids", nargs="*", type=int, metavar="ID", help="document ids (see `longrecall memory list`)")
    p.add_argument("--incomplete", action="store_true", help="forget every document whose add did not finish")
    _store_arg(p)


def _label(store_arg: str | None) -> str:
    return str(store_arg or default_store_path())


@contextlib.contextmanager
def _damaged_store_is_one_line(store_arg: str | None):
    """A store whose pages are corrupted (header intact) fails at its first query: say so in one line."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        path = _label(store_arg)
        raise UserError(f"the memory store {path} is damaged ({e}): restore it from a backup, or recover what is left "
                        f"with `sqlite3 {path} .recover | sqlite3 recovered.db`") from None


def _sqlite_files(path: str) -> list[Path]:
    return [Path(path + suffix) for suffix in ("", "-wal", "-shm", "-journal")]


def add_main(args) -> int:
    t0 = time.time()
    path = "-" if args.file == "-" else Path(args.file)
    if path != "-":
        next(iter(read_pieces(path)), None)  # a missing, binary or non-UTF-8 file is refused before a store is made
    target = _label(args.store)
    is_sqlite = not target.startswith(("postgresql://", "postgres://"))
    new_store = is_sqlite and not os.path.exists(os.path.expanduser(target))
    mem = None
    try:
        with _damaged_store_is_one_line(args.store):
            mem = Memory(args.store, embedder="auto" if args.embed else None)
            source = args.source or ("stdin" if path == "-" else str(path))
            if path == "-":
                stale = [d for d in mem.store.documents() if not d["complete"] and d["source"] == source and not d["sha256"]]
                for d in stale:
                    print(f"note: document {d['id']} ({source}) is an interrupted add from stdin, which cannot be resumed: "
                          f"remove it with `longrecall memory forget {d['id']}`", file=sys.stderr)
            done = mem.add_text(path, source, embed=args.embed)
            st = mem.store.stats()
    except BaseException:
        if mem is not None:
            with contextlib.suppress(Exception):
                empty = not mem.store.documents()
                mem.close()
                mem = None
                if new_store and empty:  # a failed first add leaves no empty store behind
                    for f in _sqlite_files(os.path.expanduser(target)):
                        with contextlib.suppress(FileNotFoundError):
                            f.unlink()
        raise
    finally:
        if mem is not None:
            mem.close()
    totals = f"the store has {st['documents']} documents, {st['chunks']} chunks, {st['vectors']} vectors"
    if done.status == "exists":
        print(f"already in the memory as document {done.doc_id} ({done.source}): the same text, nothing added; {totals}")
    elif done.status == "resumed":
        print(f"resumed document {done.doc_id} (an interrupted add of the same text) and finished it in {time.time() - t0:.1f}s; {totals}")
    else:
        extra = f" (replaced incomplete document {', '.join(map(str, done.replaced))})" if done.replaced else ""
        print(f"added document {done.doc_id}{extra} in {time.time() - t0:.1f}s; {totals}")
    return 0


def ask_main(args) -> int:
    from . import reader as R

    spec = R.reader_spec(getattr(args, "reader", None))
    loaded: list = []

    def reader():  # the model loads only once retrieval found something
        if not loaded:
            loaded.append(R.load_reader(spec))
        return loaded[0]

    def answer_with_reader(prompt: str, cap: int | None = None) -> str:
        return answer_all(reader(), [prompt], cap)[0]

    answer_with_reader.many = lambda prompts, cap=None: answer_all(reader(), prompts, cap)

    with _damaged_store_is_one_line(args.store):
        mem = Memory(store=open_store(args.store, create=False), generator=answer_with_reader)
        try:
            result = mem.ask(args.question, k=args.k, generate=not args.no_generate, budget_chars=args.budget_chars, strategy=args.strategy,
                             focus=not getattr(args, "no_focus", False), read_group=getattr(args, "read_group", GROUP) or None,
                             read_on=not getattr(args, "no_read_on", False), closest=not getattr(args, "no_closest", False))
            sources = {d["id"]: d["source"] for d in mem.store.documents()}
        finally:
            mem.close()
    if result.warning():
        print(result.warning(), file=sys.stderr)
    name = None if args.no_generate else R.describe(spec)
    items = R.evidence(result, sources)
    if getattr(args, "json", False):
        print(R.as_json(result, items, name))
    elif getattr(args, "no_evidence", False):
        print(result.context if args.no_generate else result.answer)
    else:
        print(R.render(result, items, name))
    return 0


def list_main(args) -> int:
    with _damaged_store_is_one_line(args.store):
        store = open_store(args.store, create=False)
        try:
            docs = store.documents()
        finally:
            store.close()
    if not docs:
        print(f"the memory at {_label(args.store)} holds no documents")
        return 0
    print(f"{'id':>5}  {'state':10}  {'chunks':>7}  {'chars':>10}  {'added':16}  {'sha256':12}  source")
    for d in docs:
        added = dt.datetime.fromtimestamp(d["added"]).strftime("%Y-%m-%d %H:%M")
        state = "complete" if d["complete"] else "INCOMPLETE"
        print(f"{d['id']:>5}  {state:10}  {d['chunks']:>7}  {d['chars']:>10}  {added:16}  {(d['sha256'] or '-')[:12]:12}  {d['source'] or ''}")
    n_bad = sum(not d["complete"] for d in docs)
    if n_bad:
        print(f"{n_bad} incomplete (an add was interrupted): re-run `longrecall memory add FILE` to resume, or `longrecall memory forget --incomplete`")
    return 0


def forget_main(args) -> int:
    if not args.ids and not args.incomplete:
        raise UserError("forget what? pass document ids (see `longrecall memory list`) or --incomplete")
    with _damaged_store_is_one_line(args.store):
        store = open_store(args.store, create=False)
        try:
            docs = {d["id"]: d for d in store.documents()}
            missing = [i for i in args.ids if i not in docs]
            if missing:
                raise UserError(f"no document {', '.join(map(str, missing))} in the memory: see `longrecall memory list`")
            ids = list(args.ids) + [i for i, d in docs.items() if args.incomplete and not d["complete"] and i not in args.ids]
            n = store.forget(ids)
        finally:
            store.close()
    print(f"forgot {n} document{'s' if n != 1 else ''}" + (f": {', '.join(map(str, ids))}" if ids else " (none incomplete)"))
    return 0
