"""`memory add` killed with -9 at several points and re-run: it resumes the one document, no text is doubled;
the same text twice is a no-op; `memory ask` says when it draws on an unfinished add; list and forget."""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import longrecall
from longrecall.memory.store import KILL_HOOK, SQLiteStore, skip_committed

SRC = str(Path(longrecall.__file__).resolve().parents[1])
TEXT = " ".join(f"Entry {i}: the keeper of lighthouse {i % 37} logged locker {1000 + i} at dawn." for i in range(16000))


def cli(*argv, kill_after=None, stdin=None):
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    env.pop(KILL_HOOK, None)
    if kill_after is not None:
        env[KILL_HOOK] = str(kill_after)
    return subprocess.run([sys.executable, "-m", "longrecall", *argv], env=env, capture_output=True, text=True, input=stdin, timeout=300)


def rows(db):
    with sqlite3.connect(db) as con:
        docs = con.execute("SELECT id, complete FROM documents ORDER BY id").fetchall()
        chunks = con.execute("SELECT doc_id, idx, start_char, end_char, text FROM chunks ORDER BY doc_id, idx").fetchall()
    return docs, chunks


def test_kill_9_at_several_points_then_resume_doubles_nothing(tmp_path):
    src = tmp_path / "notes.txt"
    src.write_text(TEXT, encoding="utf-8")
    ref, db = tmp_path / "ref.db", tmp_path / "m.db"
    assert cli("memory", "add", str(src), "--store", str(ref)).returncode == 0
    _, want = rows(ref)
    n = len(want)
    assert n > 1000, n  # several 256-chunk batches

    # Killed after the first batch, again in the middle, and once every chunk is in but the document is not yet
    # marked complete: each re-run carries on from what the last one committed.
    committed = []
    for kill_after in (1, n // 2, n):
        r = cli("memory", "add", str(src), "--store", str(db), kill_after=kill_after)
        assert r.returncode == -9, r.stderr
        docs, got = rows(db)
        assert docs == [(1, 0)]  # one document, incomplete
        assert [g[1] for g in got] == list(range(len(got)))  # no index twice, none skipped
        assert got == [(1, *w[1:]) for w in want[: len(got)]]  # exactly the prefix of the uninterrupted add
        committed.append(len(got))
    assert committed[0] < committed[1] < committed[2] == n

    # While incomplete, ask says so (on stderr) and still answers from what is there.
    r = cli("memory", "ask", "Which locker did the keeper log in entry 12?", "--no-generate", "--store", str(db))
    assert r.returncode == 0 and "locker 1012" in r.stdout
    assert "did not finish" in r.stderr and "memory forget 1" in r.stderr
    assert "INCOMPLETE" in cli("memory", "list", "--store", str(db)).stdout

    r = cli("memory", "add", str(src), "--store", str(db))
    assert r.returncode == 0 and r.stdout.startswith("resumed document 1"), r.stdout + r.stderr
    docs, got = rows(db)
    assert docs == [(1, 1)] and got == [(1, *w[1:]) for w in want]
    assert "".join(g[4] for g in got).count("Entry 12:") == 1  # no text doubled

    r = cli("memory", "ask", "Which locker did the keeper log in entry 12?", "--no-generate", "--store", str(db))
    assert r.returncode == 0 and r.stderr == ""


def test_same_text_twice_is_a_no_op_that_says_so(tmp_path):
    src, db = tmp_path / "a.txt", str(tmp_path / "m.db")
    src.write_text("The spare key hangs in the boathouse. The boathouse is blue.", encoding="utf-8")
    assert cli("memory", "add", str(src), "--store", db).stdout.startswith("added document 1")
    r = cli("memory", "add", str(src), "--store", db)
    assert r.returncode == 0 and r.stdout.startswith("already in the memory as document 1"), r.stdout
    r = cli("memory", "add", "-", "--store", db, stdin=src.read_text())  # the same text from stdin: known once read
    assert r.returncode == 0 and r.stdout.startswith("already in the memory as document 1"), r.stdout
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())  # a byte-order mark is not text
    assert cli("memory", "add", str(bom), "--store", db).stdout.startswith("already in the memory as document 1")
    docs, chunks = rows(db)
    assert docs == [(1, 1)] and not chunks[0][4].startswith("\ufeff")


def test_list_and_forget(tmp_path):
    db = str(tmp_path / "m.db")
    for name, text in (("a.txt", "Alpha keeps the map."), ("b.txt", "Bravo keeps the compass.")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert cli("memory", "add", str(tmp_path / name), "--store", db).returncode == 0
    out = cli("memory", "list", "--store", db).stdout
    assert "a.txt" in out and "b.txt" in out and "INCOMPLETE" not in out
    r = cli("memory", "forget", "1", "--store", db)
    assert r.returncode == 0 and r.stdout.strip() == "forgot 1 document: 1"
    r = cli("memory", "forget", "7", "--store", db)
    assert r.returncode == 2 and r.stderr.strip() == "error: no document 7 in the memory: see `longrecall memory list`"
    r = cli("memory", "ask", "Where is the map?", "--no-generate", "--store", db)
    assert r.returncode == 1 and r.stderr.startswith("error: nothing in the memory matches"), r.stderr
    assert "compass" in cli("memory", "ask", "Where is the compass?", "--no-generate", "--store", db).stdout


def test_resume_drops_committed_chunks_that_no_longer_agree():
    dropped = []
    made = iter([(0, 5, "a"), (6, 9, "b"), (10, 12, "c")])
    nxt, rest = skip_committed(made, [(0, 5), (6, 8), (9, 12)], dropped.append)
    assert nxt == 1 and dropped == [1] and list(rest) == [(6, 9, "b"), (10, 12, "c")]
    dropped.clear()
    nxt, rest = skip_committed(iter([(0, 5, "a")]), [(0, 5), (6, 8)], dropped.append)
    assert nxt == 1 and dropped == [1] and list(rest) == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_store_resume_and_digest_on_both_backends(backend, tmp_path, request):
    if backend == "sqlite":
        store = SQLiteStore(tmp_path / "m.db", batch_chunks=2, chunk_chars=40)
    else:
        from longrecall.memory.postgres import PostgresStore

        store = PostgresStore(request.getfixturevalue("pg_dsn"), batch_chunks=2, chunk_chars=40)
    text = " ".join(f"Sentence {i} names the harbour crane {i}." for i in range(40))

    def failing(after):
        yield text[:after]
        raise RuntimeError("stop")

    # A new document that fails mid-stream is taken out; a resumed one is kept (it holds earlier work).
    with pytest.raises(RuntimeError):
        store.add_stream(failing(900), "t", digest="d1")
    assert store.documents() == []
    doc = store.add_stream([text[:900]], "t", digest="d1")
    store.forget([doc])
    # Simulate the committed prefix of an interrupted add, then resume it with the whole text.
    first = store.add_stream([text[:400]], "t", digest="d1")
    if backend == "postgres":
        store.db.execute("UPDATE longrecall_documents SET complete = false WHERE id = %s", (first,))
    else:
        store.db.execute("UPDATE documents SET complete = 0 WHERE id = ?", (first,))
    assert [d["complete"] for d in store.documents("d1")] == [False]
    again = store.add_stream([text], "t", digest="d1", resume=first)
    assert again == first and [d["complete"] for d in store.documents("d1")] == [True]
    joined = " ".join(c.text for c in store.chunks(first))
    assert joined.count("crane 7.") == 1 and joined.count("crane 39.") == 1
    assert store.forget([first]) == 1 and store.documents() == []
    store.close()
