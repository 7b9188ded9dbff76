"""Chunked LM loss: same value and gradients as transformers' causal-LM loss, with ignored labels and any chunk size."""
from __future__ import annotations

import pytest
import torch

from longrecall.models import tiny_model
from longrecall.train.losses import causal_lm_loss, chunked_lm_loss

VOCAB = 64


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk", [1, 5, 16, 100])
def test_equals_transformers_loss_and_gradients(chunk):
    model = tiny_model(VOCAB).train()
    ids = torch.randint(0, VOCAB, (2, 17), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[0, :6] = -100  # e.g. loss on the answer only
    want = model(ids, labels=labels).loss
    want.backward()
    want_grads = _grads(model)
    model.zero_grad()
    got = causal_lm_loss(model, ids, labels, chunk_size=chunk)
    got.backward()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    got_grads = _grads(model)
    assert got_grads.keys() == want_grads.keys()
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g, atol=1e-6, rtol=1e-5, msg=name)


def test_no_grad_path_and_default_labels():
    model = tiny_model(VOCAB).eval()
    ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(causal_lm_loss(model, ids, chunk_size=4), model(ids, labels=ids).loss)
        hidden = model.get_decoder()(input_ids=ids).last_hidden_state
        all_ignored = torch.full_like(ids, -100)
        assert chunked_lm_loss(hidden, model.get_output_embeddings(), all_ignored).item() == 0.0
