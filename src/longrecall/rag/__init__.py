"""Retrieval: chunking, BM25 / dense / hybrid ranking, multi-hop and find-all strategies, RAG contexts for samples."""
from .chunking import Chunk, chunk_sentences, chunk_tokens, join_chunks, pack_sentences, sentence_spans
from .multihop import find_all, heuristic_entities, multihop_retrieve, rag_answer_context, ranked_for, wants_all
from .retrievers import ChunkIndex, build_rag_context, fit_budget, load_embedder, retrieve, rrf, terms

__all__ = [
    "Chunk", "chunk_sentences", "chunk_tokens", "join_chunks", "pack_sentences", "sentence_spans",
    "find_all", "heuristic_entities", "multihop_retrieve", "rag_answer_context", "ranked_for", "wants_all",
    "ChunkIndex", "build_rag_context", "fit_budget", "load_embedder", "retrieve", "rrf", "terms",
]
