"""Store fixtures: every interface test runs on SQLite and on a real PostgreSQL server started here for the session."""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from longrecall.memory.store import SQLiteStore


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server():
    """initdb + pg_ctl in a temp dir on 127.0.0.1 (as user postgres when we are root); yields an admin DSN."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (apt-get install -y postgresql): PostgresStore not tested")
    pytest.importorskip("psycopg", reason="psycopg missing (pip install 'psycopg[binary]'): PostgresStore not tested")
    root = Path(tempfile.mkdtemp(prefix="longrecall-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    run = lambda *cmd: subprocess.run(as_user + [str(c) for c in cmd], check=True, capture_output=True, timeout=120)  # noqa: E731
    try:
        run(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        run(bindir / "pg_ctl", "-D", data, "-o", opts, "-l", root / "log", "-w", "-t", "60", "start")
    except subprocess.CalledProcessError as e:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {e.stderr.decode()[-500:]}") from None
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


_db_names = itertools.count()


@pytest.fixture
def pg_dsn(pg_server):
    """A fresh database per test."""
    import psycopg

    name = f"t{os.getpid()}_{next(_db_names)}_{int(time.time() * 1000) % 100000}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return f"{pg_server}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request, tmp_path):
    """Opens (and reopens) one store of each backend; closes what it opened."""
    opened = []
    target = str(tmp_path / "memory.db") if request.param == "sqlite" else request.getfixturevalue("pg_dsn")

    def make(**kw):
        if request.param == "sqlite":
            s = SQLiteStore(target, **kw)
        else:
            from longrecall.memory.postgres import PostgresStore

            s = PostgresStore(target, **kw)
        opened.append(s)
        return s

    make.backend, make.target = request.param, target
    yield make
    for s in opened:
        try:
            s.close()
        except Exception:  # noqa: BLE001 - already closed by the test
            pass
