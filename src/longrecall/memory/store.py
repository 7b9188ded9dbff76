"""Durable chunk stores for the long-term memory: the MemoryStore interface and its SQLite implementation.

One SQLite file in WAL mode: documents, chunks with char spans, an FTS5 index kept in step by triggers, optional
float32 vectors searched by brute-force cosine in numpy batches (Python's sqlite3 here cannot load extensions, so
sqlite-vec is not an option). Each batch of chunks is one BEGIN IMMEDIATE transaction: a kill -9 loses at most the
batch in flight, and concurrent writers queue on busy_timeout instead of failing.

A document is known by the SHA-256 of its text: adding a text that is already complete is a no-op, and adding it
again after an interrupted add resumes the incomplete document from its last committed chunk (chunking is a pure
function of the text, so the committed chunks are checked span by span and the rest is appended).

    python -c "from longrecall.memory.store import SQLiteStore; s=SQLiteStore('/tmp/m.db'); s.add_document('Hi. Bye.'); print(s.stats())"
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from ..errors import UserError
from ..rag.chunking import Chunk, pack_sentences, sentence_spans

SCHEMA_VERSION = 1
MATCHES = ("any", "all", "phrase")
CHUNK_CHARS = 600  # ~130 SmolLM2 tokens of English prose: a few sentences, small enough to rank precisely
BATCH_CHUNKS = 256  # chunks per transaction: the most a crash can lose of the text being added


class MemoryStore(Protocol):
    """What Memory needs from a store (SQLiteStore, PostgresStore). Chunks come back as rag.Chunk with doc_id set."""

    def add_document(self, text: str, source: str | None = None) -> int: ...
    def add_stream(self, pieces: Iterable[str], source: str | None = None, embedder: Callable | None = None,
                   digest: str | Callable[[], str] | None = None, resume: int | None = None) -> int: ...
    def documents(self, digest: str | None = None) -> list[dict]: ...
    def forget(self, doc_ids: Sequence[int]) -> int: ...
    def chunks(self, doc_id: int | None = None) -> Iterator[Chunk]: ...
    def search_bm25(self, query: str, k: int, match: str = "any") -> list[Chunk]: ...
    def search_vector(self, vec: np.ndarray, k: int) -> list[Chunk]: ...
    def count(self, query: str, match: str = "phrase") -> int: ...
    def is_empty(self) -> bool: ...
    def has_vectors(self) -> bool: ...
    def pending_vectors(self, limit: int) -> list[tuple[int, str]]: ...
    def set_vectors(self, ids: Sequence[int], vecs: np.ndarray) -> None: ...
    def stats(self) -> dict: ...

    def chunk_count(self) -> int: ...
    def close(self) -> None: ...


def fts_tokens(text: str) -> list[str]:
    """Words as the full-text indexes split them (letters and digits; '-' and '_' separate)."""
    return re.findall(r"[^\W_]+", text.lower())


def stream_chunks(pieces: Iterable[str], max_chars: int = CHUNK_CHARS) -> Iterator[tuple[int, int, str]]:
    """(start, end, text) chunks of the concatenated pieces, cut at sentence ends; memory stays O(piece size).

    The tail after the last sentence end of a piece waits for the next piece, so no sentence is split at a seam."""
    carry, base = "", 0
    for piece in pieces:
        buf = carry + piece
        if len(buf) < 16 * max_chars:  # small pieces (a chatty stdin) would each become a tiny chunk: gather first
            carry = buf
            continue
        spans = sentence_spans(buf)
        cut = spans[-1][0] if len(spans) > 1 else 0  # the last sentence may continue in the next piece
        if cut == 0 and len(buf) > 64 * max_chars:  # no sentence end for a long stretch: cut at a space
            cut = buf.rfind(" ", 0, len(buf) - max_chars) + 1
        for s, e in pack_sentences(buf[:cut], max_chars):
            yield base + s, base + e, buf[s:e]
        carry, base = buf[cut:], base + cut
    for s, e in pack_sentences(carry, max_chars):
        yield base + s, base + e, carry[s:e]


def topk_cosine(batches: Iterable[tuple[np.ndarray, np.ndarray]], vec: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Best k (id, cosine) over (ids, unit vectors) batches, keeping only k candidates in memory."""
    q = np.asarray(vec, np.float32).ravel()
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    best_ids, best_s = np.zeros(0, np.int64), np.zeros(0, np.float32)
    for ids, mat in batches:
        ids, s = np.concatenate([best_ids, ids]), np.concatenate([best_s, mat @ q])
        top = np.argsort(-s, kind="stable")[:k]
        best_ids, best_s = ids[top], s[top]
    return [(int(i), float(s)) for i, s in zip(best_ids, best_s)]


KILL_HOOK = "LONGRECALL_TEST_KILL_AFTER_CHUNKS"


def kill_hook(committed: int) -> None:
    """Test hook: with $LONGRECALL_TEST_KILL_AFTER_CHUNKS=N, the adding process SIGKILLs itself as soon as N or more
    chunks of the document being added are committed: a kill -9 at an exact point, no sleeping and hoping."""
    limit = os.environ.get(KILL_HOOK)
    if limit and committed >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)


def nonblank(chunks: Iterable[tuple[int, int, str]]) -> Iterator[tuple[int, int, str]]:
    return (c for c in chunks if c[2].strip())


def skip_committed(chunks: Iterator, spans: Sequence[tuple[int, int]], drop: Callable[[int], None]) -> tuple[int, Iterator]:
    """Resume: walk the re-made chunks past the committed ones while their spans agree; from the first that differs
    (or when the text ran out) the stored chunks are dropped. Returns (next chunk index, the chunks still to add)."""
    it = iter(chunks)
    for i, span in enumerate(spans):
        c = next(it, None)
        if c is None or (c[0], c[1]) != tuple(span):
            drop(i)
            return i, (iter(()) if c is None else itertools.chain([c], it))
    return len(spans), it


def checked_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise UserError("nothing to add: the text is empty; pass a file or a non-empty string")
    if "\x00" in text:
        raise UserError("the text contains NUL bytes (binary data?): pass a UTF-8 text file")
    return text


_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS documents(id INTEGER PRIMARY KEY, source TEXT, added REAL NOT NULL,
    n_chars INTEGER NOT NULL DEFAULT 0, complete INTEGER NOT NULL DEFAULT 0, sha256 TEXT);
CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, doc_id INTEGER NOT NULL REFERENCES documents(id),
    idx INTEGER NOT NULL, start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, text TEXT NOT NULL, vec BLOB,
    UNIQUE(doc_id, idx));
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, content='chunks', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
"""
_COLS = "c.id, c.doc_id, c.idx, c.start_char, c.end_char, c.text"


def _chunk(row, score: float = 0.0) -> Chunk:
    _, doc_id, idx, s, e, text = row[:6]
    return Chunk(text, s, e, idx, doc_id=doc_id, score=score)


def fts_query(query: str, match: str) -> str | None:
    """An FTS5 MATCH expression of quoted words (no user syntax gets through); None when no word is left."""
    if match not in MATCHES:
        raise UserError(f"unknown match '{match}': use one of {', '.join(MATCHES)}")
    words = fts_tokens(query)
    if match != "phrase":
        from ..rag.retrievers import STOPWORDS

        words = list(dict.fromkeys(w for w in words if w not in STOPWORDS))
    if not words:
        return None
    if match == "phrase":
        return '"' + " ".join(words) + '"'
    return (" OR " if match == "any" else " AND ").join(f'"{w}"' for w in words)


class SQLiteStore:
    """A memory store in one SQLite file (created on first use)."""

    def __init__(self, path: str | os.PathLike, batch_chunks: int = BATCH_CHUNKS, chunk_chars: int = CHUNK_CHARS):
        self.path, self.batch_chunks, self.chunk_chars = Path(path), batch_chunks, chunk_chars
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout=60000")
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses nothing committed
            row = self._ready_schema()
            if row is None:  # a new (or older) store: only then take the write lock, which a running add may hold
                with self._tx():
                    for stmt in filter(str.strip, _SCHEMA.split(";\n")):
                        self.db.execute(stmt)
                    row = self.db.execute("SELECT max(version) FROM schema_version").fetchone()
                    if row[0] is None:
                        self.db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                    cols = {r[1] for r in self.db.execute("PRAGMA table_info(documents)")}
                    if "sha256" not in cols:  # stores made before documents were known by their hash (additive)
                        self.db.execute("ALTER TABLE documents ADD COLUMN sha256 TEXT")
        except sqlite3.DatabaseError as e:
            with contextlib.suppress(Exception):
                self.db.close()  # and take no -wal/-shm files with us
            if "malformed" in str(e):
                raise UserError(f"the memory store {self.path} is damaged ({e}): restore it from a backup, or recover what is "
                                f"left with `sqlite3 {self.path} .recover | sqlite3 recovered.db`") from None
            raise UserError(f"{self.path} is not a usable memory store ({e}): pass another --store path") from None
        version = row[0] or SCHEMA_VERSION
        if version > SCHEMA_VERSION:
            self.db.close()
            raise UserError(
                f"{self.path} was written by a newer longrecall (schema {version}, this one reads {SCHEMA_VERSION}): "
                "upgrade longrecall (pip install -U longrecall) or pass another --store"
            )

    def _ready_schema(self):
        """The schema_version row when the store is complete and current (a read: no lock is taken), else None.
        Opening a store to ask never waits for a writer: in WAL mode readers and the one writer do not block."""
        try:
            row = self.db.execute("SELECT max(version) FROM schema_version").fetchone()
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(documents)")}
            names = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.OperationalError:  # no tables yet
            return None
        whole = set(re.findall(r"CREATE (?:VIRTUAL )?(?:TABLE|TRIGGER|INDEX) IF NOT EXISTS (\w+)", _SCHEMA)) <= names
        return row if row[0] is not None and row[0] >= SCHEMA_VERSION and "sha256" in cols and whole else None

    @contextlib.contextmanager
    def _tx(self):
        """BEGIN IMMEDIATE takes the write lock up front, so two writers wait in turn instead of deadlocking."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def add_document(self, text: str, source: str | None = None) -> int:
        return self.add_stream([checked_text(text)], source)

    def add_stream(self, pieces: Iterable[str], source: str | None = None, embedder: Callable | None = None,
                   digest: str | Callable[[], str] | None = None, resume: int | None = None) -> int:
        """Append a document read piece by piece; committed batch by batch. Returns its id.

        digest: the text's SHA-256 (or a callable giving it once the text is read); resume: the id of an incomplete
        document of the same text, whose committed chunks are kept and whose missing ones are added."""
        chunks = nonblank(stream_chunks(pieces, self.chunk_chars))
        first = next(chunks, None)
        if first is None:
            raise UserError("nothing to add: the text is empty or only whitespace; pass a file or a non-empty string")
        chunks = itertools.chain([first], chunks)
        if resume is None:
            with self._tx():
                doc_id = self.db.execute("INSERT INTO documents(source, added, sha256) VALUES (?, ?, ?)",
                                         (source, time.time(), digest if isinstance(digest, str) else None)).lastrowid
            idx = 0
        else:
            doc_id = resume
            spans = self.db.execute("SELECT start_char, end_char FROM chunks WHERE doc_id = ? ORDER BY idx", (doc_id,)).fetchall()

            def drop(i: int) -> None:
                with self._tx():
                    self.db.execute("DELETE FROM chunks WHERE doc_id = ? AND idx >= ?", (doc_id, i))

            idx, chunks = skip_committed(chunks, spans, drop)
        try:
            batch = []
            for c in chunks:
                batch.append(c)
                if len(batch) >= self.batch_chunks:
                    idx = self._insert(doc_id, idx, batch, embedder)
                    batch = []
            idx = self._insert(doc_id, idx, batch, embedder)
        except sqlite3.IntegrityError:
            raise UserError(f"document {doc_id} is being added by another process right now: wait for it to finish") from None
        except Exception:  # bad input found mid-stream: take a new partial document out again (a kill -9 leaves it, marked incomplete)
            if resume is None:
                with self._tx():
                    self.db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
                    self.db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
            raise
        final = digest() if callable(digest) else digest
        with self._tx():
            self.db.execute("UPDATE documents SET complete = 1, sha256 = coalesce(?, sha256), n_chars = ? WHERE id = ?",
                            (final, self._end(doc_id), doc_id))
        return doc_id

    def _end(self, doc_id: int) -> int:
        row = self.db.execute("SELECT end_char FROM chunks WHERE doc_id = ? ORDER BY idx DESC LIMIT 1", (doc_id,)).fetchone()
        return row[0] if row else 0

    def documents(self, digest: str | None = None) -> list[dict]:
        """Every document (or those of one SHA-256): id, source, added, chars, chunks, complete, sha256."""
        where, args = ("WHERE d.sha256 = ?", (digest,)) if digest else ("", ())
        rows = self.db.execute(
            "SELECT d.id, d.source, d.added, d.n_chars, d.complete, d.sha256, "
            f"(SELECT count(*) FROM chunks c WHERE c.doc_id = d.id) FROM documents d {where} ORDER BY d.id", args
        ).fetchall()
        keys = ("id", "source", "added", "chars", "complete", "sha256", "chunks")
        return [dict(zip(keys, r)) | {"complete": bool(r[4])} for r in rows]

    def forget(self, doc_ids: Sequence[int]) -> int:
        """Remove documents and their chunks (and full-text entries); returns how many documents were removed."""
        with self._tx():
            n = 0
            for d in doc_ids:
                self.db.execute("DELETE FROM chunks WHERE doc_id = ?", (int(d),))
                n += self.db.execute("DELETE FROM documents WHERE id = ?", (int(d),)).rowcount
        return n

    def _insert(self, doc_id: int, idx: int, batch: list[tuple[int, int, str]], embedder) -> int:
        # Embed before taking the write lock: embedding is slow and other writers should not wait on it.
        vecs = embedder([t for _, _, t in batch]) if embedder and batch else None
        rows = [
            (doc_id, idx + i, s, e, t, None if vecs is None else np.asarray(vecs[i], np.float32).tobytes())
            for i, (s, e, t) in enumerate(batch)
        ]
        with self._tx():
            self.db.executemany("INSERT INTO chunks(doc_id, idx, start_char, end_char, text, vec) VALUES (?,?,?,?,?,?)", rows)
            if rows:
                self.db.execute("UPDATE documents SET n_chars = ? WHERE id = ?", (rows[-1][3], doc_id))
        if rows:
            kill_hook(idx + len(rows))
        return idx + len(rows)

    def chunks(self, doc_id: int | None = None) -> Iterator[Chunk]:
        where, args = ("WHERE c.doc_id = ?", (doc_id,)) if doc_id is not None else ("", ())
        for row in self.db.execute(f"SELECT {_COLS} FROM chunks c {where} ORDER BY c.doc_id, c.idx", args):
            yield _chunk(row)

    def search_bm25(self, query: str, k: int, match: str = "any") -> list[Chunk]:
        """Best k chunks by FTS5's BM25 (higher score is better), best first."""
        expr = fts_query(query, match)
        if expr is None:
            return []
        rows = self.db.execute(
            f"SELECT {_COLS}, chunks_fts.rank FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "WHERE chunks_fts MATCH ? ORDER BY chunks_fts.rank LIMIT ?",
            (expr, k),
        ).fetchall()
        return [_chunk(r, -r[6]) for r in rows]

    def count(self, query: str, match: str = "phrase") -> int:
        expr = fts_query(query, match)
        return 0 if expr is None else self.db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (expr,)).fetchone()[0]

    def is_empty(self) -> bool:
        return self.db.execute("SELECT 1 FROM chunks LIMIT 1").fetchone() is None

    def has_vectors(self) -> bool:
        return self.db.execute("SELECT 1 FROM chunks WHERE vec IS NOT NULL LIMIT 1").fetchone() is not None

    def _vector_batches(self, size: int = 8192):
        last = -1
        while True:
            rows = self.db.execute("SELECT id, vec FROM chunks WHERE vec IS NOT NULL AND id > ? ORDER BY id LIMIT ?", (last, size)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield np.array([r[0] for r in rows], np.int64), np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), -1)

    def search_vector(self, vec: np.ndarray, k: int) -> list[Chunk]:
        """Best k chunks by cosine similarity over the chunks that have vectors, best first."""
        best = topk_cosine(self._vector_batches(), vec, k)
        rows = {r[0]: r for r in self.db.execute(f"SELECT {_COLS} FROM chunks c WHERE c.id IN ({','.join('?' * len(best))})", [i for i, _ in best])}
        return [_chunk(rows[i], s) for i, s in best]

    def pending_vectors(self, limit: int) -> list[tuple[int, str]]:
        return self.db.execute("SELECT id, text FROM chunks WHERE vec IS NULL ORDER BY id LIMIT ?", (limit,)).fetchall()

    def set_vectors(self, ids: Sequence[int], vecs: np.ndarray) -> None:
        with self._tx():
            self.db.executemany("UPDATE chunks SET vec = ? WHERE id = ?", [(np.asarray(v, np.float32).tobytes(), int(i)) for i, v in zip(ids, vecs)])

    def chunk_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def stats(self) -> dict:
        q = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        files = [self.path, Path(f"{self.path}-wal")]
        return {
            "backend": "sqlite",
            "path": str(self.path),
            "schema": SCHEMA_VERSION,
            "documents": q("SELECT count(*) FROM documents"),
            "incomplete_documents": q("SELECT count(*) FROM documents WHERE complete = 0"),
            "chunks": q("SELECT count(*) FROM chunks"),
            "vectors": q("SELECT count(*) FROM chunks WHERE vec IS NOT NULL"),
            "chars": q("SELECT coalesce(sum(n_chars), 0) FROM documents"),
            "bytes": sum(f.stat().st_size for f in files if f.exists()),
        }

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        self.db.close()
