"""LIFT data: segment spans, contextualized segments, QA from needles / model / cloze, seeded byte-identical files."""
import json
import socket
from argparse import Namespace

import pytest

from longrecall.data.lift import (
    LiftDataConfig,
    build_lift_dataset,
    cloze_qa,
    encode_record,
    load_data_config,
    main,
    segment_spans,
    segments,
)
from longrecall.errors import UserError
from longrecall.niah import GenSpec, generate_sample
from longrecall.niah.haystacks import prose_text

import random


@pytest.fixture(scope="module")
def sample(tok):
    return generate_sample(GenSpec(task="multikey", length=1024, depth=0.5, haystack="prose", needle_kind="number", seed=3), tok)


def test_segment_spans_stride_overlap_and_tail():
    spans = segment_spans(1000, 256)
    assert spans[0] == (0, 256) and spans[1] == (96, 352)  # stride 3/8 * 256 = 96: overlap 5/8
    assert all(e - s == 256 for s, e in spans)
    assert spans[-1] == (744, 1000)  # the tail segment ends at the last token
    assert segment_spans(256, 256) == [(0, 256)]
    assert segment_spans(1000, 200, stride=400) == [(0, 200), (400, 600), (800, 1000)]
    ids = list(range(1000))
    assert segments(ids, 256)[1] == ids[96:352]
    with pytest.raises(UserError, match="--segment-length"):
        segment_spans(100, 256)


def test_segments_contextual_and_needle_qa(tok, sample):
    cfg = LiftDataConfig(segment_length=256, context_budget=64, qa_phrasings=2)
    parts = build_lift_dataset(sample.context, tok, cfg, needles=sample)
    n = len(tok(sample.context, add_special_tokens=False)["input_ids"])
    assert parts["segments"][-1]["end"] == n and len(parts["contextual"]) == len(parts["segments"])
    ids, labels = encode_record(parts["segments"][0], tok)
    assert ids == labels and len(ids) == 256  # loss on every token of a segment
    ids, labels = encode_record(parts["contextual"][2], tok)
    target = tok.decode([i for i, l in zip(ids, labels) if l != -100])
    assert target.startswith(tok.decode(parts["segments"][2]["input_ids"]))  # loss on the recited segment only
    assert "Recite part 3 of" in parts["contextual"][2]["prompt"][0]["content"]
    qa = parts["qa"]
    assert {r["context"] for r in qa} == {"none", "truncated"}
    for nd in sample.needles:  # every needle (targets and distractors) is asked about, in 2 phrasings x 2 context modes
        hits = [r for r in qa if nd["key"] in r["prompt"][0]["content"].split("Question:")[-1]]
        assert len(hits) >= 4 and all(nd["value"] in r["completion"][0]["content"] for r in hits if r["source"] == "needles"), nd
    bare = [r for r in qa if r["context"] == "none"]
    assert sample.question in [r["prompt"][0]["content"] for r in bare]


def test_chain_needles_become_cloze_questions(tok):
    s = generate_sample(GenSpec(task="chain", length=1024, depth=0.5, haystack="prose", needle_kind="number", seed=0), tok)
    parts = build_lift_dataset(s.context, tok, LiftDataConfig(segment_length=256, qa_context="none"), needles=s)
    answers = [r["completion"][0]["content"] for r in parts["qa"]]
    for nd in s.needles:
        assert nd["value"] in answers
    assert " -> ".join(s.chain) in answers


def test_cloze_masks_a_distinctive_span():
    text = prose_text(40, 1) + " The vault of Maria Lopez holds 8812345 coins. " + prose_text(40, 2)
    qa = cloze_qa(text, 5, random.Random(0))
    assert len(qa) == 5
    assert any(q["answer"] in {"8812345", "Maria Lopez"} for q in qa)  # numbers and names are picked first
    for q in qa:
        assert q["evidence"] in text and q["answer"] in q["evidence"] and "____" in q["question"]


def test_model_qa_keeps_only_verbatim_evidence(tok):
    text = prose_text(50, 4)
    real = text.split(". ")[3] + "."
    word = real.split()[-1].rstrip(".")
    replies = [json.dumps([{"question": "Q1?", "answer": word, "evidence": real},
                           {"question": "Q2?", "answer": "moon", "evidence": "The moon is made of cheese."}])]
    calls = []

    def chat(messages):
        calls.append(messages)
        return "Sure! " + replies[0]
    cfg = LiftDataConfig(segment_length=128, qa="model", qa_count=1, qa_context="none")
    parts = build_lift_dataset(text, tok, cfg, endpoint=chat)
    assert [r["completion"][0]["content"] for r in parts["qa"]] == [word]
    assert "Passage:" in calls[0][0]["content"]


def test_dead_endpoint_is_a_user_error(tok):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = LiftDataConfig(segment_length=128, qa="model", endpoint=f"http://127.0.0.1:{port}/v1", qa_timeout=5)
    with pytest.raises(UserError, match="longrecall serve.*--qa cloze"):
        build_lift_dataset(prose_text(30, 0), tok, cfg)


def test_cli_writes_identical_files_for_the_same_seed(tmp_path, sample):
    src = tmp_path / "sample.json"
    src.write_text(json.dumps(sample.to_dict()))
    outs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        args = Namespace(input=str(src), output_dir=str(tmp_path / name), config=None, tokenizer="default", qa=None,
                         endpoint=None, segment_length=256, seed=seed)
        assert main(args) == 0
        outs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert set(outs[0]) == {"segments.jsonl", "contextual.jsonl", "qa.jsonl", "retain.jsonl", "manifest.json"}
    assert outs[0] == outs[1]
    assert outs[0]["qa.jsonl"] != outs[2]["qa.jsonl"]
    m = json.loads(outs[0]["manifest.json"])
    assert m["seed"] == 0 and len(m["input_sha256"]) == 64 and m["counts"]["segments"] == m["token_stats"]["segments"]["records"]
    assert m["config"]["qa"] == "auto" and m["counts"]["qa"] > 0  # auto -> needles for a sample input


def test_data_config_from_an_ingest_config(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("adapter: gated\ndata:\n  segment_length: 512\n  qa: cloze\n")
    cfg = load_data_config(str(p), {"seed": 7, "qa": None})
    assert (cfg.segment_length, cfg.qa, cfg.seed) == (512, "cloze", 7)
    p.write_text("data:\n  segment_lenght: 5\n")
    with pytest.raises(UserError, match="segment_length"):
        load_data_config(str(p))
