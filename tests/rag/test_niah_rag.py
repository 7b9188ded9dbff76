"""Retrieval on the real generator's samples: multi-hop follows chains and variable tracks, find-all lists every needle."""
import pytest

from longrecall.niah import GenSpec, generate_samples
from longrecall.rag import rag_answer_context


@pytest.fixture(scope="module")
def samples(tok):
    specs = [
        GenSpec(task=task, length=4096, haystack=hay, seed=seed, depth=seed / 3, phrasing="any")
        for task in ("chain", "vartrack", "all_needles", "multiquery")
        for hay, seed in (("prose", 0), ("noise", 1), ("needles", 2), ("prose", 3))
    ]
    return generate_samples(specs, tok, progress=False)


def _has_targets(sample, context):
    return all(n["text"] in context for n in sample.needles if n["role"] == "target")


def test_auto_context_holds_every_target_needle_within_budget(samples, tok):
    for s in samples:
        ctx = rag_answer_context(s.to_dict(), tok, method="auto", budget=512)
        assert len(tok(ctx, add_special_tokens=False)["input_ids"]) <= 512
        assert _has_targets(s, ctx), (s.task, s.haystack, s.seed, s.question)
        assert len(ctx) < len(s.context) / 4


def test_multihop_beats_plain_topk_on_chains(samples, tok):
    related = [s for s in samples if s.task in ("chain", "vartrack") and len(s.chain) > 1]
    assert len(related) >= 4
    hop = sum(_has_targets(s, rag_answer_context(s.to_dict(), tok, method="multihop", budget=512, k=4)) for s in related)
    top = sum(_has_targets(s, rag_answer_context(s.to_dict(), tok, method="topk", budget=512, k=4)) for s in related)
    assert hop == len(related) and top < hop
