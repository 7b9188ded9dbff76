"""Fast tokenization of very long texts: encode in chunks split before a space, in parallel, checked once per tokenizer.

Byte-level BPE and similar pre-tokenizers never join a word with the space-prefixed word after it, so encoding
pieces that start at " word" boundaries gives exactly the tokens of the whole text. Each tokenizer is checked
against a whole-text encode once; a tokenizer where that fails falls back to one whole encode.

A long haystack's token starts are also kept on disk (`cached_starts`, under LONGRECALL_CACHE/tokens), keyed by a
hash of the tokenizer and of the text itself, so a new process slices a cached haystack instead of re-encoding it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

_CHUNK = 16_000
_SAFE: dict[int, bool] = {}
_PRINTS: dict[int, bytes] = {}
CACHE_MIN_CHARS = 4 * _CHUNK  # shorter texts encode in milliseconds: not worth a file
CACHE_BYTES = 2 * 2**30  # past this the oldest files go (a 1M-token haystack's starts take 8 MB)


def _cut_after(text: str, i: int, stop: int) -> int:
    """The first cut point (a space before a word) at or after i and before stop, else -1."""
    j = text.find(" ", i, stop)
    while j != -1 and (j + 1 >= stop or not text[j + 1].isalnum()):
        j = text.find(" ", j + 1, stop)
    return j


def _cut_before(text: str, i: int, start: int) -> int:
    """The last cut point at or before i and after start, else -1."""
    j = text.rfind(" ", start, i + 1)
    while j != -1 and (j + 1 >= len(text) or not text[j + 1].isalnum()):
        j = text.rfind(" ", start, j)
    return j


def _pieces(text: str, size: int) -> list[int]:
    cuts, i, n = [0], 0, len(text)
    while i + size < n:
        j = _cut_after(text, i + size, n)
        if j == -1:
            break
        cuts.append(j)
        i = j
    return cuts


def _chunked(tok, text: str, size: int):
    bt = tok.backend_tokenizer
    cuts = _pieces(text, size)
    bounds = cuts + [len(text)]
    encs = bt.encode_batch([text[a:b] for a, b in zip(bounds, bounds[1:])], add_special_tokens=False)
    ids = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encs]) if encs else np.zeros(0, np.int64)
    starts = np.concatenate(
        [np.asarray([o[0] for o in e.offsets], dtype=np.int64) + a for e, a in zip(encs, bounds)]
    ) if encs else np.zeros(0, np.int64)
    return ids, starts


def _whole(tok, text: str):
    e = tok.backend_tokenizer.encode(text, add_special_tokens=False)
    return np.asarray(e.ids, dtype=np.int64), np.asarray([o[0] for o in e.offsets], dtype=np.int64)


def _is_safe(tok) -> bool:
    key = id(tok)
    if key not in _SAFE:
        probe = (
            "The grass is green. Here we go, 1234567 and 7654321! <|im_start|>user\nA quiet student sold a map. "
            "One of the codes for brave-otter is: 3c5e-11. VAR ABCDE = VAR XYZWV.  Two  spaces. Ünïcode façade."
        ) * 40
        _SAFE[key] = all(np.array_equal(_chunked(tok, probe, s)[0], _whole(tok, probe)[0]) for s in (50, 333))
    return _SAFE[key]


def encode(tok, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and the char offset where each token starts, for any length of text."""
    if len(text) > 4 * _CHUNK and _is_safe(tok):
        return _chunked(tok, text, _CHUNK)
    return _whole(tok, text)


def count(tok, text: str) -> int:
    return len(encode(tok, text)[0])


def encode_spliced(tok, text: str, copies, source: str, source_starts: np.ndarray, margin: int = 64) -> np.ndarray:
    """Token start offsets of `text`, exactly as encode(tok, text)[1], where text copies long spans of an already
    encoded `source` (copies: (offset in text, offset in source, length)). Each span's inside, between two cut points,
    takes its token starts from source_starts; only the pieces around the spans (a template, inserted needles) are
    encoded. Falls back to a whole encode when the tokenizer is not safe to cut or a cut is not a source token start."""
    if not _is_safe(tok):
        return encode(tok, text)[1]
    inner = []  # (a, b, source a): text[a:b] is taken from source
    for t, s, n in sorted(copies):
        a = _cut_after(text, t + margin, t + n)
        b = _cut_before(text, t + n - margin, a + 1) if a != -1 else -1
        if a != -1 and b > a:
            inner.append((a, b, s + a - t))
    parts, pos, spans = [], 0, []
    for a, b, sa in inner:
        if a > pos:
            spans.append(("enc", pos, a))
        i, j = np.searchsorted(source_starts, [sa, sa + b - a])
        if i >= len(source_starts) or source_starts[i] != sa or j >= len(source_starts) or source_starts[j] != sa + b - a:
            return encode(tok, text)[1]  # not token starts in the source: no safe splice here
        spans.append(("src", a, source_starts[i:j] - sa + a))
        pos = b
    if pos < len(text):
        spans.append(("enc", pos, len(text)))
    todo = [(p[1], p[2]) for p in spans if p[0] == "enc"]
    encs = iter(tok.backend_tokenizer.encode_batch([text[a:b] for a, b in todo], add_special_tokens=False))
    for p in spans:
        if p[0] == "enc":
            e = next(encs)
            parts.append(np.asarray([o[0] for o in e.offsets], dtype=np.int64) + p[1])
        else:
            parts.append(np.asarray(p[2], dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _fingerprint(tok) -> bytes:
    """A digest of everything that decides the tokenizer's output (its whole serialized pipeline)."""
    key = id(tok)
    if key not in _PRINTS:
        _PRINTS[key] = hashlib.sha1(tok.backend_tokenizer.to_str().encode()).digest()
    return _PRINTS[key]


def cache_folder() -> Path | None:
    """Where token starts are cached: LONGRECALL_TOKEN_CACHE (a folder, or "off"), else LONGRECALL_CACHE/tokens."""
    env = os.environ.get("LONGRECALL_TOKEN_CACHE", "")
    if env.lower() in {"off", "0", "no", "false"}:
        return None
    if env:
        return Path(env)
    from ..models import cache_dir

    return cache_dir() / "tokens"


def cached_starts(tok, text: str) -> np.ndarray:
    """encode(tok, text)[1], read from the on-disk cache when this tokenizer has encoded this exact text before.
    The file is written atomically; an unreadable or inconsistent one is encoded again and replaced."""
    folder = cache_folder() if len(text) >= CACHE_MIN_CHARS else None
    if folder is None:
        return encode(tok, text)[1]
    digest = hashlib.sha1(_fingerprint(tok))
    digest.update(text.encode("utf-8", "surrogatepass"))
    path = folder / f"{digest.hexdigest()}.npy"
    try:
        starts = np.load(path, mmap_mode="r")
        if starts.ndim == 1 and len(starts) and starts[0] == 0 and 0 <= starts[-1] < len(text):
            return starts
    except (OSError, ValueError):
        pass
    starts = encode(tok, text)[1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, starts)
        os.replace(tmp, path)
        _prune(folder)
    except OSError:
        pass  # a read-only or full disk only costs the next process an encode
    return starts


def _prune(folder: Path, limit: int = CACHE_BYTES) -> None:
    """Delete the least recently written cache files until the folder holds at most `limit` bytes."""
    files = sorted(((st.st_mtime_ns, st.st_size, f) for f in folder.glob("*.npy") for st in [f.stat()]), reverse=True)
    total = 0
    for _, size, f in files:
        total += size
        if total > limit:
            f.unlink(missing_ok=True)
