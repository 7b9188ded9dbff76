"""Greedy answers to a batch of prompts that share an opening: the opening is prefilled once.

An every-X question is read one evidence sentence at a time (memory.listing), 8-64 prompts that differ only in the
sentence and share the chat template's system turn and "Notes:" (43 of ~82 tokens with the memory's prompt).
Prefill is what costs (measured: 16 such prompts, prefill 9.5 s of 11.2 s on one loaded core), so the shared opening
is run once, its KV cache repeated over the batch, and only each prompt's own tail is prefilled. Tails of different
lengths are padded between the opening and the tail; positions come from the attention mask (transformers counts
them with a cumsum), so every prompt sees the positions it would see alone. `benchmarks/bench_listing.py` measures it
against the plain left-padded batch; tests/memory/test_batched.py checks the answers are the same.
"""
from __future__ import annotations

from typing import Sequence

MIN_SHARED = 16  # a shorter common opening is not worth a second forward call


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """Length of the opening every row shares (never a whole row: each prompt keeps at least its last token)."""
    n = min(len(r) for r in rows) - 1
    first = rows[0]
    for r in rows[1:]:
        i = 0
        while i < n and r[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


def greedy_batch(lm, rows: Sequence[Sequence[int]], pad_id: int, max_new_tokens: int, share: bool = True) -> list[list[int]]:
    """The generated token ids of each row (greedy, one decode loop for all). share=False, a single row, or an
    opening shorter than MIN_SHARED: a plain left-padded batch."""
    import torch
    from transformers import DynamicCache

    shared = common_prefix(rows) if share and len(rows) > 1 else 0
    if shared < MIN_SHARED:
        shared = 0
    tails = [list(r[shared:]) for r in rows]
    width = max(len(t) for t in tails)
    head = list(rows[0][:shared])
    ids = torch.tensor([head + [pad_id] * (width - len(t)) + t for t in tails])
    mask = torch.tensor([[1] * shared + [0] * (width - len(t)) + [1] * len(t) for t in tails])
    kwargs = {}
    with torch.no_grad():
        if shared:
            cache = DynamicCache(config=lm.config)
            lm(input_ids=torch.tensor([head]), cache=cache, use_cache=True, logits_to_keep=1)
            cache.batch_repeat_interleave(len(rows))
            kwargs["cache"] = cache
        out = lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                          pad_token_id=pad_id, **kwargs)
    return [row[shared + width:].tolist() for row in out]
