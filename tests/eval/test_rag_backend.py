"""The retrieval backend of the grid: the reader sees retrieved text (within budget, needles kept), and runs end to end."""
from types import SimpleNamespace

import pytest

from longrecall.errors import UserError
from longrecall.eval.grid import GridConfig, run_grid
from longrecall.eval.rag_backend import make_rag_backend
from longrecall.niah import GenSpec, generate_sample


def test_retrieval_keeps_the_chain_within_budget(tok, tiny_model_dir):
    cfg = GridConfig(model=str(tiny_model_dir), backend="rag", rag_method="multihop", rag_budget=256)
    backend = make_rag_backend(cfg, tokenizer=tok)
    s = generate_sample(GenSpec(task="chain", length=4096, hops=3, direction="forward", haystack="prose", seed=4), tok)
    short = backend.transform(s)
    assert len(tok(short.context)["input_ids"]) <= 256
    for n in s.needles:
        if n["role"] == "target":
            assert n["text"] in short.context


def test_rag_grid_runs_end_to_end(tok, tiny_model_dir, tmp_path):
    cfg = GridConfig(model=str(tiny_model_dir), backend="rag", lengths=[1024], depths=[0.5], tasks=["single"],
                     samples=1, max_new_tokens=4, output_dir=str(tmp_path / "rag"))
    rows = run_grid(cfg, progress=False)
    assert len(rows) == 1 and rows[0]["backend"].startswith("rag-auto") and 0.0 <= rows[0]["score"] <= 1.0


def test_unknown_rag_method(tiny_model_dir):
    with pytest.raises(UserError, match="rag-method"):
        make_rag_backend(SimpleNamespace(rag_method="magic"))
