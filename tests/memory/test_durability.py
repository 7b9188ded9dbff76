"""A SQLite store survives kill -9 in the middle of an add, and two processes adding at once."""
import os
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
    import os, sys, time
    from longrecall.memory.store import SQLiteStore
    s = SQLiteStore(sys.argv[1], batch_chunks=2, chunk_chars=40)
    open(sys.argv[1] + "." + sys.argv[2] + ".ready", "w").close()
    while not os.path.exists(sys.argv[1] + ".go"):  # start together, so the writers really race
        time.sleep(0.01)
    t0 = time.time()
    for i in range(int(sys.argv[3])):
        s.add_document(" ".join(f"Writer {sys.argv[2]} line {j} of doc{sys.argv[2]}x{i}." for j in range(12)), source=f"{sys.argv[2]}-{i}")
    print(t0, time.time())
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
    procs = [_spawn(ADD_MANY, str(path), name, "15") for name in ("a", "b")]
    deadline = time.time() + 60
    while not all(Path(f"{path}.{n}.ready").exists() for n in "ab") and time.time() < deadline:
        time.sleep(0.01)
    Path(f"{path}.go").touch()
    windows = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        windows.append([float(x) for x in out.split()])
    (a0, a1), (b0, b1) = windows
    assert a0 < b1 and b0 < a1  # the two adds overlapped in time (one may have waited on the lock)
    s = SQLiteStore(path)
    assert s.integrity_check() == "ok"
    s.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    st = s.stats()
    assert st["documents"] == 30 and st["incomplete_documents"] == 0
    for name in ("a", "b"):
        for i in range(15):
            hits = s.search_bm25(f"doc{name}x{i}", 50)
            assert len(hits) == s.count(f"doc{name}x{i}") and len({c.doc_id for c in hits}) == 1
            doc = hits[0].doc_id
            texts = [c.text for c in s.chunks(doc)]
            assert " ".join(texts).count(f"doc{name}x{i}.") == 12  # every line of every document, in order
    s.close()
