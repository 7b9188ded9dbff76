"""Retrieval and hybrid backends for the NIAH grid: the sample's haystack is replaced by what retrieval finds.

    longrecall eval niah --backend rag --rag-method auto ...                  # base model + retrieval
    longrecall eval niah --backend rag --adapter runs/x/train/adapter ...     # hybrid: fine-tuned reader + retrieval

The reader is the in-process HF model (with an optional LoRA+ or LIFT adapter); `rag_method` picks plain top-k,
multi-hop (follows what retrieved facts point to), find-all, or `auto` (by the question).
"""
from __future__ import annotations

import dataclasses

from .backends import ContextTransformBackend, HFBackend

RAG_METHODS = ("topk", "multihop", "findall", "auto")


def make_rag_backend(cfg, tokenizer=None) -> ContextTransformBackend:
    from ..errors import UserError
    from ..models import load_tokenizer
    from ..rag.multihop import rag_answer_context

    if cfg.rag_method not in RAG_METHODS:
        raise UserError(f"unknown --rag-method '{cfg.rag_method}': use one of {', '.join(RAG_METHODS)}")
    inner = HFBackend(model=cfg.model, adapter=cfg.adapter, dtype=cfg.dtype, batch_size=cfg.batch_size)
    tok = tokenizer or load_tokenizer(cfg.tokenizer or cfg.model)
    embedder = None
    if cfg.rag_retriever in ("dense", "hybrid"):
        from ..rag.retrievers import load_embedder

        embedder = load_embedder()

    def retrieve(sample):
        ctx = rag_answer_context(sample.to_dict(), tok, method=cfg.rag_method, budget=cfg.rag_budget,
                                 retriever=cfg.rag_retriever, fill=True, embedder=embedder)
        return dataclasses.replace(sample, context=ctx)

    retrieve.__name__ = f"rag-{cfg.rag_method}"
    return ContextTransformBackend(inner, retrieve)
