"""Fast tokenization of very long texts: encode in chunks split before a space, in parallel, checked once per tokenizer.

Byte-level BPE and similar pre-tokenizers never join a word with the space-prefixed word after it, so encoding
pieces that start at " word" boundaries gives exactly the tokens of the whole text. Each tokenizer is checked
against a whole-text encode once; a tokenizer where that fails falls back to one whole encode.
"""
from __future__ import annotations

import numpy as np

_CHUNK = 16_000
_SAFE: dict[int, bool] = {}


def _pieces(text: str, size: int) -> list[int]:
    cuts, i, n = [0], 0, len(text)
    while i + size < n:
        j = text.find(" ", i + size)
        while j != -1 and j + 1 < n and not text[j + 1].isalnum():
            j = text.find(" ", j + 1)
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
