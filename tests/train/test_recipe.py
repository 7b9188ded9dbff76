"""The LongLoRA recipe on a tiny random model: data/labels, training, exact resume, NaN stop, configs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from longrecall.config import load_config
from longrecall.errors import UserError
from longrecall.models import tiny_model
from longrecall.train.recipe import (
    IGNORE_INDEX,
    LongLoraConfig,
    chat_example,
    main,
    mix_examples,
    pretrain_examples,
    train_longlora,
    validate,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _chat(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Remember: the code is {4000 + i}. What is the code?"}, {"role": "assistant", "content": f"The code is {4000 + i}."}]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tok):
    root = tmp_path_factory.mktemp("recipe")
    tiny_model(len(tok)).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    (root / "sft.jsonl").write_text("".join(json.dumps({"messages": _chat(i)}) + "\n" for i in range(6)))
    (root / "one.jsonl").write_text(json.dumps({"messages": _chat(0)}) + "\n")
    (root / "pre.jsonl").write_text("".join(json.dumps({"text": f"Document {i}: rivers run to the sea. " * 12}) + "\n" for i in range(3)))
    return root


def _cfg(files, out, **kw) -> LongLoraConfig:
    base = dict(model=str(files / "base"), sft=str(files / "sft.jsonl"), pretrain=str(files / "pre.jsonl"), max_length=96,
                max_steps=4, save_steps=2, warmup_steps=0, lr=5e-3, output_dir=str(out))
    return LongLoraConfig(**{**base, **kw})


def test_chat_labels_cover_only_the_final_assistant_turn(tok):
    msgs = [_chat(1)[0], {"role": "assistant", "content": "Noted."}, {"role": "user", "content": "Again?"}, {"role": "assistant", "content": "4001."}]
    ex = chat_example(tok, msgs, max_length=512)
    assert len(ex["input_ids"]) == len(ex["labels"])
    first = next(i for i, lab in enumerate(ex["labels"]) if lab != IGNORE_INDEX)
    assert all(lab == IGNORE_INDEX for lab in ex["labels"][:first])
    assert ex["labels"][first:] == ex["input_ids"][first:]
    assert tok.decode(ex["input_ids"][first:]).strip() == "4001.<|im_end|>"
    assert "Noted." in tok.decode(ex["input_ids"][:first])  # earlier assistant turns are context, not targets
    assert chat_example(tok, msgs, max_length=10) is None
    with pytest.raises(UserError):
        chat_example(tok, msgs[:1], max_length=512)


def test_pretrain_packing_and_mix(tok):
    rows = [{"text": "alpha beta gamma"}, {"text": "delta"}, {"input_ids": list(range(10))}]
    blocks = pretrain_examples(tok, rows, max_length=4)
    assert [b["input_ids"] for b in blocks[:3]] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    stream = [t for b in blocks[3:] for t in b["input_ids"]]
    assert stream.count(tok.eos_token_id) == 2 and all(len(b["input_ids"]) <= 4 for b in blocks)
    assert all(b["labels"] == b["input_ids"] for b in blocks)
    mixed = mix_examples([{"k": "p"}] * 2, [{"k": "s"}] * 8, mix=0.5, seed=0)
    assert len(mixed) == 10 and sum(m["k"] == "s" for m in mixed) == 5


def test_cli_trains_and_loss_decreases_on_a_repeated_sample(files, tmp_path):
    out = tmp_path / "run"
    preset = tmp_path / "p.yaml"
    preset.write_text(f"model: {files / 'base'}\nsft: {files / 'one.jsonl'}\nmax_length: 96\nwarmup_steps: 0\nsave_steps: 100\n")
    assert main(["--config", str(preset), "--output-dir", str(out), "--set", "max_steps=8", "--set", "lr=1e-2", "--set", "lora.rank=4"]) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in log if "loss" in row]
    assert len(losses) == 8 and losses[-1] < 0.8 * losses[0]
    assert (out / "loss.png").stat().st_size > 1000
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 4
    info = json.loads((out / "adapter" / "longrecall_adapter.json").read_text())
    assert info["steps"] == 8 and info["positions"]["factor"] == 1


def test_resume_after_kill_gives_the_same_weights(files, tmp_path):
    straight = train_longlora(_cfg(files, tmp_path / "straight", target_length=16384))

    class Kill(Exception):
        pass

    class KillAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise Kill

    with pytest.raises(Kill):
        train_longlora(_cfg(files, tmp_path / "killed", target_length=16384), callbacks=[KillAtStep3()])
    assert (tmp_path / "killed" / "checkpoint-2").exists() and not (tmp_path / "killed" / "adapter").exists()
    class CountSteps(TrainerCallback):
        steps = []

        def on_step_end(self, args, state, control, **kw):
            self.steps.append(state.global_step)

    resumed = train_longlora(_cfg(files, tmp_path / "killed", target_length=16384), callbacks=[CountSteps()])
    assert CountSteps.steps == [3, 4]  # it resumed from checkpoint-2 rather than starting over
    assert resumed["steps"] == straight["steps"] == 4
    a = load_file(Path(straight["adapter"]) / "adapter_model.safetensors")
    b = load_file(Path(resumed["adapter"]) / "adapter_model.safetensors")
    assert a.keys() == b.keys() and any("embed_tokens" in k for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    info = json.loads((Path(resumed["adapter"]) / "longrecall_adapter.json").read_text())
    assert info["positions"]["factor"] == 2  # 16k target over the tiny model's 8k native context


def test_memory_lean_loss_matches_transformers_loss(files, tmp_path):
    from longrecall.train.losses import chunked_lm_loss
    from longrecall.train.recipe import _final_hidden, build_model

    model = build_model(_cfg(files, tmp_path, s2attn=False))
    ids = torch.randint(0, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :9] = IGNORE_INDEX
    ours = chunked_lm_loss(_final_hidden(model, ids), model.get_output_embeddings(), labels, chunk_size=7)
    assert torch.allclose(ours, model(input_ids=ids, labels=labels).loss, atol=1e-5)


def test_nan_loss_stops_with_a_user_error(files, tmp_path):
    with pytest.raises(UserError, match="lower lr"):
        train_longlora(_cfg(files, tmp_path / "nan", lr=1e30, max_steps=6, save_steps=100))


def test_config_errors_are_user_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft: x.jsonl\nlerning_rate: 0.1\n")
    with pytest.raises(UserError, match="unknown config key"):
        load_config(LongLoraConfig, bad)
    with pytest.raises(UserError, match="no training data"):
        validate(LongLoraConfig())
    with pytest.raises(UserError, match="target_length"):
        validate(LongLoraConfig(sft="x", max_length=4096, target_length=2048))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("longlora-*.yaml")), ids=lambda p: p.name)
def test_every_longlora_preset_validates(path):
    validate(load_config(LongLoraConfig, path))


@pytest.mark.parametrize("name", ["fsdp.yaml", "deepspeed_zero2.yaml"])
def test_accelerate_configs_parse(name):
    # Only parsed: multi-GPU launches cannot run on these CPU machines.
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(CONFIGS / "accelerate" / name)
    assert cfg.mixed_precision == "bf16" and cfg.num_processes > 1


def _spy_s2attn(monkeypatch):
    """Count S²-Attn's grouped attention calls (the sparse path; full attention never reaches it)."""
    import longrecall.train.s2attn as s2attn

    calls = [0]
    real = s2attn._grouped_sdpa

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(s2attn, "_grouped_sdpa", counting)
    return calls


def _record_steps(monkeypatch, calls, tok):
    """(is a chat, S²-Attn calls during that training step) per micro-step; chats told apart by their first token."""
    import longrecall.train.recipe as recipe

    steps, make = [], recipe._trainer_cls
    im_start = tok.convert_tokens_to_ids("<|im_start|>")

    def cls():
        class Recording(make()):
            def training_step(self, model, inputs, *args, **kwargs):
                before = calls[0]
                out = super().training_step(model, inputs, *args, **kwargs)
                steps.append((int(inputs["input_ids"][0, 0]) == im_start, calls[0] - before))
                return out

        return Recording

    monkeypatch.setattr(recipe, "_trainer_cls", cls)
    return steps


@pytest.mark.parametrize("s2attn_sft", [False, True])
def test_chats_train_with_full_attention_and_blocks_with_s2attn(files, tmp_path, tok, monkeypatch, s2attn_sft):
    calls = _spy_s2attn(monkeypatch)
    steps = _record_steps(monkeypatch, calls, tok)
    train_longlora(_cfg(files, tmp_path / "run", max_steps=8, save_steps=100, gradient_checkpointing=False, bf16=False,
                        s2attn_sft=s2attn_sft))
    chats, blocks = [n for chat, n in steps if chat], [n for chat, n in steps if not chat]
    assert chats and blocks, steps  # the mix gave both kinds
    assert all(n > 0 for n in blocks)  # packed next-token blocks: S²-Attn in every layer
    assert all((n > 0) == s2attn_sft for n in chats)  # chats: full attention unless s2attn_sft


def test_s2attn_off_never_runs_it(files, tmp_path, tok, monkeypatch):
    calls = _spy_s2attn(monkeypatch)
    train_longlora(_cfg(files, tmp_path / "run", s2attn=False, max_steps=3, save_steps=100, gradient_checkpointing=False))
    assert calls[0] == 0


def test_s2attn_on_chats_only_says_it_changes_nothing(files, tmp_path, capsys, tok, monkeypatch):
    calls = _spy_s2attn(monkeypatch)
    train_longlora(_cfg(files, tmp_path / "sft", pretrain=None, max_steps=1, save_steps=100, gradient_checkpointing=False))
    out = capsys.readouterr().out
    assert calls[0] == 0 and "s2attn: true has no effect" in out and "set s2attn: false" in out
    train_longlora(_cfg(files, tmp_path / "mixed", max_steps=1, save_steps=100, gradient_checkpointing=False))
    assert "no effect" not in capsys.readouterr().out  # with pretrain blocks S²-Attn runs: no note
    train_longlora(_cfg(files, tmp_path / "sft-s2", pretrain=None, s2attn_sft=True, max_steps=1, save_steps=100,
                        gradient_checkpointing=False))
    assert "no effect" not in capsys.readouterr().out and calls[0] > 0


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("longlora-*.yaml")), ids=lambda p: p.name)
def test_no_preset_turns_on_an_s2attn_that_never_runs(path):
    from longrecall.train.recipe import s2attn_note

    cfg = load_config(LongLoraConfig, path)
    chat, block = {"labels": [IGNORE_INDEX, 5]}, {"labels": [5, 6]}
    examples = ([chat] if cfg.sft else []) + ([block] if cfg.pretrain and cfg.mix < 1 else [])
    assert s2attn_note(cfg, examples) is None, f"{path.name}: s2attn: true on chats only; set s2attn: false"


def test_a_second_phase_starts_from_the_first_phases_weights(files, tmp_path):
    from peft import get_peft_model_state_dict

    from longrecall.train.recipe import build_model

    first = train_longlora(_cfg(files, tmp_path / "p1", target_length=16384, max_steps=3))
    saved = load_file(Path(first["adapter"]) / "adapter_model.safetensors")
    cfg = _cfg(files, tmp_path / "p2", target_length=16384, continue_from=first["adapter"])
    started = get_peft_model_state_dict(build_model(cfg))
    assert saved.keys() == started.keys() and any("embed_tokens" in k for k in saved)
    for key in saved:
        assert torch.equal(saved[key], started[key].to(saved[key].dtype)), key
    fresh = get_peft_model_state_dict(build_model(_cfg(files, tmp_path / "p0", target_length=16384)))
    assert any(not torch.equal(saved[k], fresh[k].to(saved[k].dtype)) for k in saved)  # the copy is not the init
    second = train_longlora(cfg)
    info = json.loads((Path(second["adapter"]) / "longrecall_adapter.json").read_text())
    assert info["config"]["continue_from"] == first["adapter"] and second["steps"] == 4


@pytest.mark.parametrize("change", [{"lora": {"rank": 4}}, {"target_length": None}, {"continue_from": "nowhere"}])
def test_a_second_phase_that_cannot_continue_is_a_one_line_error(files, tmp_path, change):
    from dataclasses import replace

    from longrecall.train.lora_plus import LoraPlusConfig

    first = train_longlora(_cfg(files, tmp_path / "p1", target_length=16384, max_steps=1))
    kw = dict(target_length=16384, continue_from=first["adapter"])
    kw.update({k: v for k, v in change.items() if k != "lora"})
    cfg = _cfg(files, tmp_path / "p2", **kw)
    if "lora" in change:
        cfg = replace(cfg, lora=LoraPlusConfig(**change["lora"]))
    with pytest.raises(UserError) as err:
        train_longlora(cfg)
    assert "\n" not in str(err.value) and ("continue_from" in str(err.value) or "adapter folder" in str(err.value))
    assert not (tmp_path / "p2" / "adapter").exists()
