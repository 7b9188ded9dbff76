"""Atomic, durable file writes: a reader sees the old file or the whole new one, never a part."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import UserError


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file next to `path`; on success fsync and rename it over `path`; on error delete it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder: pass a file path to write to")
    if path.parent.exists() and not path.parent.is_dir():
        raise UserError(f"{path.parent} is a file, not a folder: pass another output path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if "b" in mode:
        encoding = None
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows as JSON lines atomically; return the number written."""
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, ensure_ascii=False)
        fh.write("\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read JSON lines; a missing, empty or corrupt file is a UserError naming the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: check the path or create it first")
    if path.is_dir():
        raise UserError(f"{path} is a folder: pass a JSONL file")
    rows = []
    with open(path, encoding="utf-8") as fh:
        i = 0
        try:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise UserError(f"{path}:{i} is not valid JSON: delete or regenerate the file") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}:{i + 1} is not UTF-8 text (a binary file?): pass a JSONL file") from None
    return rows


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one row and fsync: used for resumable grids where each finished cell must survive a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
