"""Shared fixtures for eval tests: the default tokenizer and a tiny random model saved with it."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tok):
    """A 2-layer hidden-32 Llama with the real vocabulary; weights widened so different prompts give different text."""
    import torch

    from longrecall.models import tiny_model

    model = tiny_model(len(tok))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
