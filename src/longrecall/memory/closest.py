"""A one-hop question is read from the one evidence sentence closest to it in meaning.

When retrieval followed no link (the answer is one fact), the focused evidence is often a few sentences about the
same key: the asked item and its neighbours ("Last week Fiona stored their stroller at the stable." next to "Fiona
tucked their cat into a corner of the cellar." for "Fiona needs the pram back. Where is it?"). A 135M reader picks
among them by words and is near chance when the question's words are not the needle's (non-literal needles: 54% at
1M with reader-v1). A sentence embedder (all-MiniLM-L6-v2, installed with longrecall) ranks them by meaning; the
reader is then shown only the closest one. Measured on the memory bench's evidence before building this: the closest
sentence was the needle for 47 of 50 non-literal questions (25 of 30 on blind worlds), and single-needle answers were
unchanged. Chains (a followed link) and every-X questions (many sentences wanted) are left alone.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..rag.chunking import Chunk
from ..rag.multihop import lists_all


def applies(question: str, strategy: str, chunks: Sequence[Chunk], trace: Sequence[dict]) -> bool:
    """Several evidence sentences, no link followed, not an every-X question."""
    return len(chunks) >= 2 and not any(hop.get("via") for hop in trace) and not lists_all(question, strategy)


def closest(question: str, chunks: Sequence[Chunk], embed: Callable[[Sequence[str]], np.ndarray]) -> Chunk:
    """The chunk whose text is closest to the question by cosine (embed returns unit vectors); the first on a tie."""
    vecs = np.asarray(embed([question, *(c.text for c in chunks)]), dtype=np.float32)
    return chunks[int(np.argmax(vecs[1:] @ vecs[0]))]
