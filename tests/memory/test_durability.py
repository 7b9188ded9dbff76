"""A SQLite store survives kill -9 in the middle of an add, and two processes adding at once."""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import longrecall
from longrecall.memory.store import SQLiteStore

SRC = str(Path(longrecall.__file__).resolve().parents[1])

ENDLESS_ADD = textwrap.dedent(
    """
    import itertools, sys
    from longrecall.memory.store import SQLiteStore
    s = SQLiteStore(sys.argv[1], batch_chunks=8, chunk_chars=60)
    s.add_document("The early document mentions the zeppelin hangar. It is complete.", source="early")
    def endless():
        for i in itertools.count():
            yield f"Streamed sentence {i} about the lighthouse keeper. "
    s.add_stream(endless(), source="endless")
    """
)

ADD_MANY = textwrap.dedent(
    """
    import contextlib, os, sqlite3, sys, time
    from longrecall.memory.store import SQLiteStore
    path, me, other, n_docs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    s = SQLiteStore(path, batch_chunks=2, chunk_chars=40)

    def committed_chunks(source):
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
            return db.execute("SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.source = ?",
                              (source,)).fetchone()[0]

    def wait_for(flag):
        deadline = time.monotonic() + 600  # a hang guard if the other writer died; the order does not depend on time
        while not os.path.exists(flag):
            if time.monotonic() > deadline:
                sys.exit(f"writer {me}: {flag} never appeared")
            time.sleep(0.01)

    def stream():
        # Rendezvous inside the write path: once some of this document is committed (and it is not complete), wait
        # until the other writer is in the same state. Both documents are then being written at once, whatever the
        # machine's load, and every later batch of each lands after a batch of the other.
        met = False
        for i in range(30):
            if not met and committed_chunks(f"{me}-stream") > 0:
                open(f"{path}.{me}.mid", "w").close()
                wait_for(f"{path}.{other}.mid")
                met = True
            yield " ".join(f"Writer {me} stream line {i}x{j}." for j in range(20)) + " "
        assert met, "the rendezvous never happened"

    s.add_stream(stream(), source=f"{me}-stream")
    for i in range(n_docs):
        s.add_document(" ".join(f"Writer {me} line {j} of doc{me}x{i}." for j in range(12)), source=f"{me}-{i}")
    """
)


def _spawn(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _committed_chunks(path: Path, doc_id: int) -> int:
    try:
        with sqlite3.connect(path, timeout=10) as db:
            return db.execute("SELECT count(*) FROM chunks WHERE doc_id = ?", (doc_id,)).fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_kill_9_mid_add_leaves_a_consistent_store(tmp_path):
    path = tmp_path / "m.db"
    child = _spawn(ENDLESS_ADD, str(path))
    try:
        deadline = time.time() + 60
        while _committed_chunks(path, 2) < 24 and time.time() < deadline:  # at least three batches committed
            assert child.poll() is None, child.stderr.read().decode()
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    s = SQLiteStore(path)
    assert s.integrity_check() == "ok"
    s.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")  # FTS index matches the chunks table
    st = s.stats()
    assert st["documents"] == 2 and st["incomplete_documents"] == 1
    n_partial = st["chunks"] - sum(1 for _ in s.chunks(1))
    assert n_partial >= 24 and n_partial % 8 == 0  # whole batches only
    early = s.search_bm25("zeppelin hangar", 5)
    assert len(early) == 1 and early[0].doc_id == 1 and early[0].text.startswith("The early document")
    assert s.count("lighthouse") == n_partial
    s.add_document("After the crash the store still takes text.")
    assert s.search_bm25("crash", 1)[0].doc_id == 3
    s.close()


def test_two_processes_adding_at_once_lose_nothing(tmp_path):
    path = tmp_path / "m.db"
    SQLiteStore(path).close()  # schema created; both writers then race on every batch
    procs = [_spawn(ADD_MANY, str(path), me, other, "10") for me, other in (("a", "b"), ("b", "a"))]
    for p in procs:
        _, err = p.communicate(timeout=900)  # a hang guard only
        assert p.returncode == 0, err.decode()
    s = SQLiteStore(path)
    assert s.integrity_check() == "ok"
    s.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    st = s.stats()
    assert st["documents"] == 22 and st["incomplete_documents"] == 0
    # The two streamed documents were written at the same time: their committed batches interleave.
    ids = {me: [r[0] for r in s.db.execute("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.source = ?",
                                           (f"{me}-stream",))] for me in "ab"}
    assert min(ids["a"]) < max(ids["b"]) and min(ids["b"]) < max(ids["a"])
    for me in "ab":
        doc = s.db.execute("SELECT id FROM documents WHERE source = ?", (f"{me}-stream",)).fetchone()[0]
        text = " ".join(c.text for c in s.chunks(doc))
        lines = [f"Writer {me} stream line {i}x{j}." for i in range(30) for j in range(20)]
        assert re.findall(rf"Writer {me} stream line \d+x\d+\.", text) == lines  # every sentence, once, in order
        for i in range(10):
            hits = s.search_bm25(f"doc{me}x{i}", 50)
            assert len(hits) == s.count(f"doc{me}x{i}") and len({c.doc_id for c in hits}) == 1
            texts = [c.text for c in s.chunks(hits[0].doc_id)]
            assert " ".join(texts).count(f"doc{me}x{i}.") == 12  # every line of every document, in order
    s.close()


HOLD_WRITE_LOCK = textwrap.dedent(
    """
    import os, sqlite3, sys, time
    path, release = sys.argv[1], sys.argv[2]
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")  # what `memory add` holds while it writes a batch
    db.execute("INSERT INTO documents(source, added) VALUES ('half-written', 0)")
    open(path + ".locked", "w").close()
    deadline = time.monotonic() + 300  # a hang guard only
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    db.execute("ROLLBACK")
    print("released by the test" if os.path.exists(release) else "released by the hang guard")
    """
)


def _wait_file(path: Path, proc: subprocess.Popen) -> None:
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1].decode()
        time.sleep(0.02)


def test_asks_do_not_wait_for_a_writer_holding_the_lock(tmp_path):
    """Several `memory ask` processes while a writer holds the write lock mid-batch: they all answer while it is
    still held (in WAL mode a reader never waits on the writer; opening a store takes no lock). Were any of them to
    wait on the lock, it could only finish after the writer let go, which it does only once they all have."""
    path, release = tmp_path / "m.db", tmp_path / "release"
    s = SQLiteStore(path)
    s.add_document("The sky is grey. Kofi keeps the violin in locker 4417. The tram is late.", source="notes")
    s.close()
    writer = _spawn(HOLD_WRITE_LOCK, str(path), str(release))
    _wait_file(Path(f"{path}.locked"), writer)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    asks = [subprocess.Popen([sys.executable, "-m", "longrecall", "memory", "ask", "Where does Kofi keep the violin?",
                              "--no-generate", "--store", str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(3)]
    outs = [p.communicate(timeout=280) for p in asks]
    release.touch()
    held, err = writer.communicate(timeout=120)
    for p, (out, e) in zip(asks, outs):
        assert p.returncode == 0, e.decode()[-1000:]
        assert "locker 4417" in out.decode()
    assert held.decode().strip() == "released by the test", err.decode()
    s = SQLiteStore(path)
    assert [d["source"] for d in s.documents()] == ["notes"]  # the held batch was rolled back, nothing else changed
    s.close()


def test_asks_while_an_add_streams_never_fail(tmp_path):
    """A real `memory add` of a growing stream and three askers in a loop: every ask answers from what is committed."""
    path = tmp_path / "m.db"
    writer = _spawn(ENDLESS_ADD, str(path))
    deadline = time.monotonic() + 600  # a hang guard only
    while _committed_chunks(path, 2) < 16:
        assert writer.poll() is None and time.monotonic() < deadline, writer.communicate()[1].decode()
        time.sleep(0.05)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    loop = ("import sys\nfrom longrecall.memory.api import Memory, open_store\n"
            "for i in range(5):\n"
            "    m = Memory(store=open_store(sys.argv[1], create=False), embedder=None)\n"
            "    a = m.ask('Where is the zeppelin hangar?', generate=False)\n"
            "    assert 'zeppelin hangar' in a.context, a.context\n"
            "    m.close()\n")
    askers = [subprocess.Popen([sys.executable, "-c", loop, str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for _ in range(3)]
    results = [p.communicate(timeout=600) for p in askers]
    growing = writer.poll() is None
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    for p, (_, e) in zip(askers, results):
        assert p.returncode == 0, e.decode()[-1000:]
    assert growing  # the add was still writing the whole time
