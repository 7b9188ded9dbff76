"""Memory-lean next-token loss: the lm_head and cross-entropy run over chunks of hidden states, recomputed in backward.

    OMP_NUM_THREADS=1 PYTHONPATH=src python -m pytest tests/train/test_losses.py -q

At 16k tokens and a 49k vocabulary the fp32 logits alone are 3 GB (and their log-softmax, kept for backward,
as much again); chunking with checkpointing keeps one chunk of logits alive at a time.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100


def _chunk_loss_sum(hidden, lm_head, labels):
    logits = lm_head(hidden).float()
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_lm_loss(hidden: torch.Tensor, lm_head, labels: torch.Tensor, chunk_size: int = 2048) -> torch.Tensor:
    """Mean next-token cross-entropy of lm_head(hidden) against labels (both [b, n]; -100 = ignored).

    Same value and gradients as transformers' causal-LM loss; lm_head is called as a module, so adapters on it apply.
    """
    hidden, targets = hidden[:, :-1], labels[:, 1:].to(hidden.device)
    count = (targets != IGNORE_INDEX).sum()
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[1], chunk_size):
        h, t = hidden[:, start : start + chunk_size], targets[:, start : start + chunk_size]
        if torch.is_grad_enabled() and h.requires_grad:
            total = total + checkpoint(_chunk_loss_sum, h, lm_head, t, use_reentrant=False)
        else:
            total = total + _chunk_loss_sum(h, lm_head, t)
    return total / count.clamp(min=1)


def causal_lm_loss(model, input_ids: torch.Tensor, labels: torch.Tensor | None = None, chunk_size: int = 2048, **kwargs):
    """Run the decoder without its lm_head and return chunked_lm_loss (labels default to input_ids)."""
    out = model.get_decoder()(input_ids=input_ids, **kwargs)
    head = model.get_output_embeddings()
    return chunked_lm_loss(out.last_hidden_state, head, input_ids if labels is None else labels, chunk_size)
