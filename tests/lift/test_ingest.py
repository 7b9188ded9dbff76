"""LIFT ingest + ask end to end on a tiny random model saved with the default tokenizer."""
import json
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from longrecall.config import load_config
from longrecall.lift import ask as ask_mod
from longrecall.lift.ingest import IngestConfig, add_arguments, ingest, main, schedule
from longrecall.models import load_tokenizer, tiny_model
from longrecall.niah.haystacks import prose_text

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    tok = load_tokenizer("default")
    folder = tmp_path_factory.mktemp("tiny")
    model = tiny_model(len(tok))
    with torch.no_grad():  # at the default init (std 0.02) logits are ~uniform and no adapter can move the loss visibly
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(5)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("input") / "notes.txt"
    p.write_text(prose_text(25, 5) + " The archive key of Nora Hale is 5551234. " + prose_text(10, 6))
    return p


def _cfg(tiny_dir, **over):
    base = {"model": str(tiny_dir), "lr": 1e-2, "stage1_epochs": 1, "stage2_epochs": 1}
    return load_config(IngestConfig, CONFIGS / "lift-cpu-smoke.yaml", {**base, **over})


@pytest.mark.parametrize("adapter,lr", [("gated", 1e-2), ("lora", 1e-3)])
def test_ingest_then_ask(tiny_dir, text_file, tmp_path, adapter, lr):
    out = tmp_path / "adapter"
    m = ingest(text_file, out, _cfg(tiny_dir, adapter=adapter, lr=lr), progress=False)
    files = {p.name for p in out.iterdir()}
    weights = "gated_memory.safetensors" if adapter == "gated" else "adapter_model.safetensors"
    assert {weights, "adapter_config.json", "lift_manifest.json", "context.json", "longrecall.json", "vocabulary.json", "data"} <= files
    assert {"nora", "hale", "5551234"} <= set(json.loads((out / "vocabulary.json").read_text()))
    saved = json.loads((out / "lift_manifest.json").read_text())
    assert saved["input_sha256"] == m["input_sha256"] and saved["input_tokens"] > 128
    assert saved["steps"] == len(saved["loss_history"]) > 0
    assert {h["stage"] for h in saved["loss_history"]} == {1, 2}
    assert saved["input_loss_after"] < saved["input_loss_before"] - 0.02  # the input is being stored
    for mode in ("none", "truncated"):
        answer = ask_mod.ask(out, "What is the archive key of Nora Hale?", mode, max_new_tokens=4)
        assert isinstance(answer, str)


def test_ask_warns_on_another_input(tiny_dir, text_file, tmp_path, capsys):
    out = tmp_path / "adapter"
    main(Namespace(input=str(text_file), model=str(tiny_dir), output_dir=str(out), config=str(CONFIGS / "lift-cpu-smoke.yaml"),
                   adapter=None, qa=None, set=["max_steps=3", "loss_eval_segments=0"]))
    assert "ingested" in capsys.readouterr().out
    assert json.loads((out / "lift_manifest.json").read_text())["steps"] == 3
    other = tmp_path / "other.txt"
    other.write_text(prose_text(30, 9))
    with pytest.warns(UserWarning, match="ingested from"):
        ask_mod.main(Namespace(adapter=str(out), question="Who?", context="none", input=str(other), max_new_tokens=2, route="always"))
    assert ask_mod.check_input(ask_mod.read_manifest(out), text_file)


def test_schedule_two_stages_and_shipped_configs(tiny_dir):
    parts = {"segments": [{"kind": "segment", "id": i} for i in range(3)], "contextual": [], "qa": [{"kind": "qa", "id": 9}]}
    order = schedule(parts, IngestConfig(stage1_epochs=2, stage2_epochs=1, qa_repeat=2))
    assert [s for s, _, _ in order] == [1] * 6 + [2] * 5
    assert all(len(rs) == 1 and rs[0]["kind"] == "segment" for s, _, rs in order if s == 1)
    assert sum(rs[0]["kind"] == "qa" for _, _, rs in order) == 2
    full = load_config(IngestConfig, CONFIGS / "lift-cpu.yaml")
    assert full.adapter == "gated" and full.lr == 1e-3 and full.data.segment_length == 1024
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    a = p.parse_args(["--input", "x", "--output-dir", "y", "--adapter", "lora", "--set", "data.qa=cloze"])
    assert (a.adapter, a.set) == ("lora", ["data.qa=cloze"])


def test_linear_lr_schedule_decays_to_zero_and_a_wrong_name_is_a_user_error(tiny_dir, text_file, tmp_path):
    m = ingest(text_file, tmp_path / "lin", _cfg(tiny_dir, lr_schedule="linear", loss_eval_segments=0), progress=False)
    lrs = [h["lr"] for h in m["loss_history"]]
    assert lrs[0] == pytest.approx(1e-2) and all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 1e-2 / len(lrs) * 1.01
    from longrecall.errors import UserError

    with pytest.raises(UserError, match="lr_schedule=constant or linear"):
        ingest(text_file, tmp_path / "bad", _cfg(tiny_dir, lr_schedule="cosine", loss_eval_segments=0), progress=False)


def test_qa_batch_groups_chat_records_of_one_kind_and_keeps_every_record():
    parts = {"segments": [{"kind": "segment", "id": i} for i in range(3)],
             "qa": [{"kind": "qa", "id": 10 + i} for i in range(5)], "retain": [{"kind": "retain_chat", "id": 20 + i} for i in range(3)]}
    order = schedule(parts, IngestConfig(stage1_epochs=1, stage2_epochs=2, qa_repeat=2, qa_batch=4))
    for epoch in (1, 2):
        steps = [rs for _, e, rs in order if e == epoch]
        assert sorted(r["id"] for rs in steps for r in rs) == sorted([0, 1, 2] + [10, 11, 12, 13, 14] * 2 + [20, 21, 22])
        assert all(len({r["kind"] for r in rs}) == 1 for rs in steps)  # never mixes kinds (the penalty is per kind)
        assert sorted(len(rs) for rs in steps if rs[0]["kind"] == "qa") == [2, 4, 4]  # 10 QA: two full steps, one short
        assert all(len(rs) == 1 for rs in steps if rs[0]["kind"] == "segment")


def test_a_padded_batch_loses_what_its_records_lose_alone(tiny_dir):
    """Right padding changes nothing: the batch's loss is its records' losses weighted by answer tokens."""
    from longrecall.data.lift import encode_record
    from longrecall.lift.ingest import _batch, _batch_loss, attach_adapter
    from longrecall.models import load_model

    tok = load_tokenizer("default")
    cfg = IngestConfig(bf16=False, gate="paper", model=str(tiny_dir))  # an open gate: the memory takes part
    model = attach_adapter(load_model(str(tiny_dir)), cfg).eval()
    recs = [{"kind": "qa", "prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": a}]}
            for q, a in (("What is the archive key of Nora Hale?", "It is 5551234."), ("Who?", "Nora"))]
    enc = [encode_record(r, tok) for r in recs]
    assert len(enc[0][0]) != len(enc[1][0])
    with torch.no_grad():
        alone = [_batch_loss(model, _batch([e], tok.pad_token_id), cfg).item() for e in enc]
        both = _batch_loss(model, _batch(enc, tok.pad_token_id), cfg).item()
    n = [sum(x != -100 for x in e[1][1:]) for e in enc]
    assert both == pytest.approx((alone[0] * n[0] + alone[1] * n[1]) / sum(n), rel=1e-4)


@pytest.mark.parametrize("on", ["gate", "output"])
def test_retain_records_with_a_gate_penalty_keep_the_gate_shut_on_chats(tiny_dir, text_file, tmp_path, on):
    """Same ingest twice, the penalty off and on (on the gate, or on the output change): the penalty's run ends with
    smaller gates on ordinary chats."""
    from longrecall.lift.folder import load
    from longrecall.lift.gated_memory import gate_means

    tok = load_tokenizer("default")
    chats = [torch.tensor([tok.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True,
                                                   tokenize=True, return_dict=False)]) for c in ("Name a bird.", "What is 2 plus 2?")]
    means = {}
    for penalty in (0.0, 10.0):
        out = tmp_path / f"p{penalty}"
        m = ingest(text_file, out, _cfg(tiny_dir, gate_penalty=penalty, gate_penalty_on=on, max_new_tokens=4, loss_eval_segments=0,
                                        **{"data.retain_chats": 3, "data.retain_absent": 2}), progress=False)
        retained = [h for h in m["loss_history"] if h["kind"].startswith("retain")]
        assert len(retained) == 5 and all(("gate" in h) == (penalty > 0) for h in retained)
        assert (out / "data" / "retain.jsonl").read_text().count("retain_chat") == 3
        load.cache_clear()
        model, _, _ = load(str(out))
        means[penalty] = sum(abs(g) for g in gate_means(model, chats))
    assert means[10.0] < means[0.0]


def test_the_entity_route_opens_the_adapter_for_what_the_input_names_and_leaves_the_base_model_otherwise(tiny_dir, text_file, tmp_path):
    """route entity: a question naming Nora Hale is answered with the adapter open; an unrelated one by the base
    model exactly (same greedy answer as the tiny model with no adapter)."""
    from longrecall.lift.folder import load
    from longrecall.lift.gated_memory import GatedMemory
    from longrecall.errors import UserError

    out = tmp_path / "adapter"
    ingest(text_file, out, _cfg(tiny_dir, adapter="gated", lr=5e-2, max_steps=12, loss_eval_segments=0), progress=False)
    model, tok, _ = load(str(out), None)  # the cached model ask() uses
    scales = lambda: {m.gate_scale for m in model.modules() if isinstance(m, GatedMemory)}  # noqa: E731
    unrelated = "What is the capital of France?"
    routed = ask_mod.ask(out, unrelated, "none", max_new_tokens=6, route="entity")
    assert scales() == {0.0}
    ids = tok.apply_chat_template(ask_mod.prompt_messages(out, unrelated), add_generation_prompt=True, tokenize=True, return_dict=False)
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    with torch.no_grad():
        plain = base.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=6,
                              do_sample=False, pad_token_id=tok.pad_token_id)
    assert routed == tok.decode(plain[0, len(ids):], skip_special_tokens=True).strip()
    ask_mod.ask(out, "What is the archive key of Nora Hale?", "none", max_new_tokens=2, route="entity")
    assert scales() == {1.0}
    assert ask_mod.ask(out, unrelated, "none", max_new_tokens=6) == routed and scales() == {0.0}  # auto: entity
    always = ask_mod.ask(out, unrelated, "none", max_new_tokens=6, route="always")
    assert scales() == {1.0} and isinstance(always, str)
    with pytest.raises(UserError, match="--route"):
        ask_mod.ask(out, unrelated, route="sometimes")
