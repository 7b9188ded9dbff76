"""memory.batched: a batch whose shared opening is prefilled once answers exactly as the plain batch and as each
prompt alone (tiny random Llama, fp32, the real tokenizer)."""
from __future__ import annotations

import pytest

from longrecall.memory.batched import MIN_SHARED, common_prefix, greedy_batch


def test_common_prefix_stops_at_the_first_difference_and_keeps_a_last_token():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 9, 4]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # each row keeps its last token to prefill
    assert common_prefix([[5, 6], [7, 8], [5, 6]]) == 0


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # larger random weights than the init's: continuations that depend on the prompt
        for p in lm.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return lm


def test_a_shared_opening_prefilled_once_gives_the_answers_of_the_plain_batch_and_of_each_prompt_alone(tiny_lm, tok):
    opening = tok("You answer questions using only the notes you are given. Answer briefly, and say so when they do not hold it.")["input_ids"]
    tails = ["The vault code for amber-falcon is 4417204.\nQuestion: which codes?",
             "Remember that the vault code for brave-otter is 9021377, written on a card by the door.\nQuestion: which codes?",
             "A code.\nQuestion: which?"]
    rows = [opening + tok(t)["input_ids"] for t in tails]
    assert common_prefix(rows) >= MIN_SHARED and len({len(r) for r in rows}) == 3  # tails of three lengths: padding between
    shared = greedy_batch(tiny_lm, rows, tok.pad_token_id or 0, 12, share=True)
    plain = greedy_batch(tiny_lm, rows, tok.pad_token_id or 0, 12, share=False)
    alone = [greedy_batch(tiny_lm, [r], tok.pad_token_id or 0, 12)[0] for r in rows]
    assert shared == plain == alone
    assert all(len(s) == 12 for s in shared) and len({tuple(s) for s in shared}) > 1  # real, differing continuations
