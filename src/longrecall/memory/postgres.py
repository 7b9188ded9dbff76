"""The MemoryStore interface on PostgreSQL (psycopg 3): tsvector full text with a GIN index, float32 vectors as bytea.

pgvector is not packaged for Debian 12, so vectors are ranked by brute-force cosine in numpy batches, as in SQLite.
Full-text ranking weights each matched query word by its BM25 idf (ts_rank_cd alone knows no document frequency).

    python -c "from longrecall.memory.postgres import PostgresStore; print(PostgresStore('postgresql://127.0.0.1/postgres').stats())"
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import UserError
from ..rag.chunking import Chunk
from .store import (BATCH_CHUNKS, CHUNK_CHARS, MATCHES, SCHEMA_VERSION, checked_text, fts_tokens, kill_hook, nonblank,
                    skip_committed, stream_chunks, topk_cosine)

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS longrecall_schema(version integer NOT NULL)",
    """CREATE TABLE IF NOT EXISTS longrecall_documents(id bigserial PRIMARY KEY, source text,
        added double precision NOT NULL, n_chars bigint NOT NULL DEFAULT 0, complete boolean NOT NULL DEFAULT false)""",
    """CREATE TABLE IF NOT EXISTS longrecall_chunks(id bigserial PRIMARY KEY,
        doc_id bigint NOT NULL REFERENCES longrecall_documents(id), idx integer NOT NULL,
        start_char bigint NOT NULL, end_char bigint NOT NULL, text text NOT NULL, vec bytea,
        tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED, UNIQUE(doc_id, idx))""",
    "CREATE INDEX IF NOT EXISTS longrecall_chunks_tsv ON longrecall_chunks USING gin(tsv)",
    "ALTER TABLE longrecall_documents ADD COLUMN IF NOT EXISTS sha256 text",  # documents known by their hash
]
_COLS = "id, doc_id, idx, start_char, end_char, text"
_LOCK = 7_402_113  # advisory lock id: two processes creating the schema at once take turns


def _chunk(row, score: float = 0.0) -> Chunk:
    return Chunk(row[5], int(row[3]), int(row[4]), int(row[2]), doc_id=int(row[1]), score=score)


def ts_query(query: str, match: str) -> tuple[str, str] | None:
    """(tsquery function, its argument) for a match mode; only plain words reach the parser."""
    if match not in MATCHES:
        raise UserError(f"unknown match '{match}': use one of {', '.join(MATCHES)}")
    words = fts_tokens(query)
    if match != "phrase":
        from ..rag.retrievers import STOPWORDS

        words = list(dict.fromkeys(w for w in words if w not in STOPWORDS))
    if not words:
        return None
    if match == "phrase":
        return "phraseto_tsquery", " ".join(words)
    return "to_tsquery", (" | " if match == "any" else " & ").join(words)


class PostgresStore:
    """A memory store in a PostgreSQL database (tables prefixed longrecall_)."""

    def __init__(self, dsn: str, batch_chunks: int = BATCH_CHUNKS, chunk_chars: int = CHUNK_CHARS):
        try:
            import psycopg
        except ImportError:
            raise UserError("PostgreSQL stores need psycopg: run `pip install 'psycopg[binary]'`") from None
        self.dsn, self.batch_chunks, self.chunk_chars = dsn, batch_chunks, chunk_chars
        try:
            self.db = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as e:
            msg = str(e).strip().splitlines()[0][:160]
            raise UserError(f"cannot connect to PostgreSQL ({msg}): start the server or fix the DSN") from None
        with self.db.transaction():
            self.db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            for stmt in _SCHEMA:
                self.db.execute(stmt)
            version = self.db.execute("SELECT max(version) FROM longrecall_schema").fetchone()[0]
            if version is None:
                self.db.execute("INSERT INTO longrecall_schema VALUES (%s)", (SCHEMA_VERSION,))
        if (version or SCHEMA_VERSION) > SCHEMA_VERSION:
            self.db.close()
            raise UserError(
                f"the PostgreSQL store was written by a newer longrecall (schema {version}, this one reads "
                f"{SCHEMA_VERSION}): upgrade longrecall (pip install -U longrecall) or use another database"
            )

    def add_document(self, text: str, source: str | None = None) -> int:
        return self.add_stream([checked_text(text)], source)

    def add_stream(self, pieces: Iterable[str], source: str | None = None, embedder: Callable | None = None,
                   digest=None, resume: int | None = None) -> int:
        """As SQLiteStore.add_stream: committed batch by batch, known by its SHA-256, resumable."""
        import itertools

        import psycopg

        chunks = nonblank(stream_chunks(pieces, self.chunk_chars))
        first = next(chunks, None)
        if first is None:
            raise UserError("nothing to add: the text is empty or only whitespace; pass a file or a non-empty string")
        chunks = itertools.chain([first], chunks)
        if resume is None:
            doc_id = self.db.execute("INSERT INTO longrecall_documents(source, added, sha256) VALUES (%s, %s, %s) RETURNING id",
                                     (source, time.time(), digest if isinstance(digest, str) else None)).fetchone()[0]
            idx = 0
        else:
            doc_id = resume
            spans = self.db.execute("SELECT start_char, end_char FROM longrecall_chunks WHERE doc_id = %s ORDER BY idx", (doc_id,)).fetchall()
            drop = lambda i: self.db.execute("DELETE FROM longrecall_chunks WHERE doc_id = %s AND idx >= %s", (doc_id, i))  # noqa: E731
            idx, chunks = skip_committed(chunks, [(int(a), int(b)) for a, b in spans], drop)
        try:
            batch = []
            for c in chunks:
                batch.append(c)
                if len(batch) >= self.batch_chunks:
                    idx = self._insert(doc_id, idx, batch, embedder)
                    batch = []
            idx = self._insert(doc_id, idx, batch, embedder)
        except psycopg.errors.UniqueViolation:
            raise UserError(f"document {doc_id} is being added by another process right now: wait for it to finish") from None
        except Exception:  # bad input found mid-stream: take a new partial document out again
            if resume is None:
                with self.db.transaction():
                    self.db.execute("DELETE FROM longrecall_chunks WHERE doc_id = %s", (doc_id,))
                    self.db.execute("DELETE FROM longrecall_documents WHERE id = %s", (doc_id,))
            raise
        final = digest() if callable(digest) else digest
        end = self.db.execute("SELECT end_char FROM longrecall_chunks WHERE doc_id = %s ORDER BY idx DESC LIMIT 1", (doc_id,)).fetchone()
        self.db.execute("UPDATE longrecall_documents SET complete = true, sha256 = coalesce(%s, sha256), n_chars = %s WHERE id = %s",
                        (final, int(end[0]) if end else 0, doc_id))
        return doc_id

    def documents(self, digest: str | None = None) -> list[dict]:
        where, args = ("WHERE d.sha256 = %s", (digest,)) if digest else ("", ())
        rows = self.db.execute(
            "SELECT d.id, d.source, d.added, d.n_chars, d.complete, d.sha256, "
            f"(SELECT count(*) FROM longrecall_chunks c WHERE c.doc_id = d.id) FROM longrecall_documents d {where} ORDER BY d.id", args
        ).fetchall()
        keys = ("id", "source", "added", "chars", "complete", "sha256", "chunks")
        return [dict(zip(keys, r)) | {"id": int(r[0]), "chars": int(r[3]), "complete": bool(r[4]), "chunks": int(r[6])} for r in rows]

    def forget(self, doc_ids: Sequence[int]) -> int:
        n = 0
        with self.db.transaction():
            for d in doc_ids:
                self.db.execute("DELETE FROM longrecall_chunks WHERE doc_id = %s", (int(d),))
                n += self.db.execute("DELETE FROM longrecall_documents WHERE id = %s", (int(d),)).rowcount
        return n

    def _insert(self, doc_id: int, idx: int, batch, embedder) -> int:
        vecs = embedder([t for _, _, t in batch]) if embedder and batch else None
        rows = [
            (doc_id, idx + i, s, e, t, None if vecs is None else np.asarray(vecs[i], np.float32).tobytes())
            for i, (s, e, t) in enumerate(batch)
        ]
        if rows:
            with self.db.transaction(), self.db.cursor() as cur:
                cur.executemany("INSERT INTO longrecall_chunks(doc_id, idx, start_char, end_char, text, vec) VALUES (%s,%s,%s,%s,%s,%s)", rows)
                cur.execute("UPDATE longrecall_documents SET n_chars = %s WHERE id = %s", (rows[-1][3], doc_id))
            kill_hook(idx + len(rows))
        return idx + len(rows)

    def chunks(self, doc_id: int | None = None) -> Iterator[Chunk]:
        where, args = ("WHERE doc_id = %s", (doc_id,)) if doc_id is not None else ("", ())
        with self.db.cursor() as cur:
            for row in cur.execute(f"SELECT {_COLS} FROM longrecall_chunks {where} ORDER BY doc_id, idx", args):
                yield _chunk(row)

    def search_bm25(self, query: str, k: int, match: str = "any") -> list[Chunk]:
        q = ts_query(query, match)
        if q is None:
            return []
        fn, arg = q
        # ts_rank_cd knows no document frequency, so a common word would outrank a rare one: weight each query word
        # by its BM25 idf (from the GIN index) and keep ts_rank_cd only to break ties.
        words = arg.split(" | ") if match == "any" else [arg] if match == "phrase" else arg.split(" & ")
        n = max(self.db.execute("SELECT count(*) FROM longrecall_chunks").fetchone()[0], 1)
        idf = [math.log(1 + (n - df + 0.5) / (df + 0.5)) for df in (self.count(w, "phrase") for w in words)]
        weighted = " + ".join("%s * (tsv @@ phraseto_tsquery('simple', %s))::int" for _ in words)
        params = [x for pair in zip(idf, words) for x in pair]
        rows = self.db.execute(
            f"SELECT {_COLS}, {weighted} + 0.01 * ts_rank_cd(tsv, q) AS r FROM longrecall_chunks, {fn}('simple', %s) q "
            "WHERE tsv @@ q ORDER BY r DESC, id LIMIT %s",
            (*params, arg, k),
        ).fetchall()
        return [_chunk(r, float(r[6])) for r in rows]

    def count(self, query: str, match: str = "phrase") -> int:
        q = ts_query(query, match)
        if q is None:
            return 0
        fn, arg = q
        return self.db.execute(f"SELECT count(*) FROM longrecall_chunks WHERE tsv @@ {fn}('simple', %s)", (arg,)).fetchone()[0]

    def is_empty(self) -> bool:
        return self.db.execute("SELECT 1 FROM longrecall_chunks LIMIT 1").fetchone() is None

    def has_vectors(self) -> bool:
        return self.db.execute("SELECT 1 FROM longrecall_chunks WHERE vec IS NOT NULL LIMIT 1").fetchone() is not None

    def _vector_batches(self, size: int = 8192):
        last = -1
        while True:
            rows = self.db.execute("SELECT id, vec FROM longrecall_chunks WHERE vec IS NOT NULL AND id > %s ORDER BY id LIMIT %s", (last, size)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield np.array([r[0] for r in rows], np.int64), np.frombuffer(b"".join(bytes(r[1]) for r in rows), np.float32).reshape(len(rows), -1)

    def search_vector(self, vec: np.ndarray, k: int) -> list[Chunk]:
        best = topk_cosine(self._vector_batches(), vec, k)
        rows = {r[0]: r for r in self.db.execute(f"SELECT {_COLS} FROM longrecall_chunks WHERE id = ANY(%s)", ([i for i, _ in best],))}
        return [_chunk(rows[i], s) for i, s in best]

    def pending_vectors(self, limit: int) -> list[tuple[int, str]]:
        return [tuple(r) for r in self.db.execute("SELECT id, text FROM longrecall_chunks WHERE vec IS NULL ORDER BY id LIMIT %s", (limit,))]

    def set_vectors(self, ids: Sequence[int], vecs: np.ndarray) -> None:
        with self.db.transaction(), self.db.cursor() as cur:
            cur.executemany("UPDATE longrecall_chunks SET vec = %s WHERE id = %s", [(np.asarray(v, np.float32).tobytes(), int(i)) for i, v in zip(ids, vecs)])

    def chunk_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM longrecall_chunks").fetchone()[0]

    def stats(self) -> dict:
        q = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "backend": "postgres",
            "schema": SCHEMA_VERSION,
            "documents": q("SELECT count(*) FROM longrecall_documents"),
            "incomplete_documents": q("SELECT count(*) FROM longrecall_documents WHERE NOT complete"),
            "chunks": q("SELECT count(*) FROM longrecall_chunks"),
            "vectors": q("SELECT count(*) FROM longrecall_chunks WHERE vec IS NOT NULL"),
            "chars": int(q("SELECT coalesce(sum(n_chars), 0) FROM longrecall_documents")),
            "bytes": q("SELECT pg_total_relation_size('longrecall_chunks') + pg_total_relation_size('longrecall_documents')"),
        }

    def close(self) -> None:
        self.db.close()
