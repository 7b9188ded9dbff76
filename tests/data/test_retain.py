"""Retain records for LIFT: other texts asked in context, ordinary chats answered as the base answers, absent keys."""
import re

import pytest

from longrecall.data import retain
from longrecall.data.lift import LiftDataConfig, build_lift_dataset, encode_record
from longrecall.errors import UserError
from longrecall.lift.evaluate import CHATS
from longrecall.niah import GenSpec, generate_sample


def test_context_records_carry_their_text_and_its_answer(tok):
    records = retain.context_records(6, tok, 512, seed=0)
    assert [r["kind"] for r in records] == ["retain_context"] * 6
    assert len({r["prompt"][-1]["content"] for r in records}) == 6
    for r in records:
        ids, labels = encode_record(r, tok)
        assert len(ids) <= 560 and any(x != -100 for x in labels)
    numbers = 0
    for r in records:  # the ground truth, rendered as the SFT data renders it: its values are in the prompt's text
        for value in re.findall(r"\b\d{7}\b|[0-9a-f]{8}-[0-9a-f-]{27}", r["completion"][0]["content"]):
            assert value in r["prompt"][-1]["content"]
            numbers += 1
    assert numbers >= 3
    assert retain.context_records(6, tok, 512, seed=0) == records  # seeded


def test_chats_are_the_base_models_replies_and_not_the_evaluation_chats():
    seen = []
    records = retain.chat_records(5, lambda m: seen.append(m) or f"reply {len(seen)}")
    assert [r["completion"][0]["content"] for r in records] == [f"reply {i}" for i in range(1, 6)]
    assert not set(retain.TRAIN_CHATS) & set(CHATS)
    with pytest.raises(UserError, match="lift ingest"):
        retain.chat_records(2, None)
    with pytest.raises(UserError, match="retain_chats <="):
        retain.chat_records(len(retain.TRAIN_CHATS) + 1, lambda m: "x")


def test_absent_keys_are_never_in_the_input_and_the_answer_says_so(tok):
    s = generate_sample(GenSpec(task="multiquery", length=1024, haystack="prose", seed=4), tok)
    names = ["access code"]
    records = retain.absent_records(12, names, s.context, seed=1)
    keys = set()
    for r in records:
        question, answer = r["prompt"][0]["content"], r["completion"][0]["content"]
        key = next(k for k in answer.split() if "-" in k).rstrip(".")
        assert key in question and key not in s.context and key not in keys
        keys.add(key)
        assert not any(nd["value"] in answer for nd in s.to_dict()["needles"])


def test_build_lift_dataset_adds_retain_only_when_asked(tok):
    s = generate_sample(GenSpec(task="multiquery", length=1024, haystack="prose", seed=4), tok)
    text = s.context
    cfg = LiftDataConfig(segment_length=256, contextual=False, qa="needles", qa_context="none")
    assert build_lift_dataset(text, tok, cfg, needles=s.to_dict())["retain"] == []
    cfg = LiftDataConfig(segment_length=256, contextual=False, qa="needles", qa_context="none",
                         retain_context=2, retain_chats=2, retain_absent=3, retain_length=512)
    parts = build_lift_dataset(text, tok, cfg, needles=s.to_dict(), base_reply=lambda m: "base says hi")
    kinds = [r["kind"] for r in parts["retain"]]
    assert kinds == ["retain_context"] * 2 + ["retain_chat"] * 2 + ["retain_absent"] * 3
    from longrecall.data.lift import _needle_name

    names = {_needle_name(nd) for nd in s.to_dict()["needles"]} - {None}
    for r in parts["retain"][-3:]:  # asked in the input's own needle names, about keys it never mentions
        assert any(name in r["prompt"][0]["content"] for name in names)
