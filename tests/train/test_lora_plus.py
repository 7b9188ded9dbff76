"""LoRA+ on a tiny random model: only the intended weights move, and save/load/merge reproduce the trained model."""
from __future__ import annotations

import json

import pytest
import torch

from longrecall.errors import UserError
from longrecall.models import load_model, load_tokenizer, tiny_model
from longrecall.train.lora_plus import (
    LoraPlusConfig,
    apply_lora_plus,
    format_report,
    load_adapter,
    merge_adapter,
    merge_main,
    param_groups,
    save_adapter,
    store_frozen_bf16,
    trainable_report,
)
from longrecall.train.positions import apply_position_scaling

VOCAB = 512


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    tiny_model(VOCAB).save_pretrained(path)
    return path


def _train(model, cfg, steps=2, lr=1e-2):
    opt = torch.optim.AdamW(param_groups(model, cfg, lr))
    ids = torch.randint(0, VOCAB, (1, 24), generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    return ids


def _lora_plus(base_dir, cfg=None, scale_to=None):
    torch.manual_seed(0)
    model = load_model(str(base_dir))
    if scale_to:
        apply_position_scaling(model, scale_to)
    return apply_lora_plus(model, cfg or LoraPlusConfig())


def test_two_steps_move_only_lora_embedding_and_norms(base_dir):
    model = _lora_plus(base_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train(model, LoraPlusConfig())
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved, "nothing trained"
    for name in moved:  # trained copies live in peft's modules_to_save; the originals and base linears stay put
        assert "lora_" in name or ".modules_to_save." in name, name
    assert any("lora_B" in n for n in moved)
    assert any("embed_tokens.modules_to_save" in n for n in moved)
    assert sum("norm.modules_to_save" in n or "layernorm.modules_to_save" in n for n in moved) == 5
    frozen = [n for n in before if n not in moved]
    assert any("original_module" in n for n in frozen) and any("q_proj.base_layer" in n for n in frozen)
    inner = model.get_base_model()
    assert inner.lm_head.weight is inner.model.embed_tokens.weight  # tied head follows the trained embedding


def test_report_counts(base_dir):
    cfg = LoraPlusConfig(rank=4, mlp=True)
    report = trainable_report(_lora_plus(base_dir, cfg))
    hidden, kv, inter, layers = 32, 16, 64, 2
    attn = 4 * (hidden + hidden) + 4 * (hidden + kv) * 2 + 4 * (hidden + hidden)  # q, k, v, o: r * (in + out)
    mlp = 4 * (hidden + inter) * 2 + 4 * (inter + hidden)
    assert report["lora"]["params"] == layers * (attn + mlp)
    assert report["lora"]["tensors"] == layers * 7 * 2
    assert report["embeddings"]["params"] == VOCAB * hidden and report["embeddings"]["tensors"] == 1
    assert report["norms"] == {"params": 5 * hidden, "tensors": 5, "names": report["norms"]["names"]}
    assert report["other"]["params"] == 0
    assert "trainable" in format_report(report)
    plain = trainable_report(_lora_plus(base_dir, LoraPlusConfig(train_embeddings=False, train_norms=False)))
    assert plain["embeddings"]["params"] == plain["norms"]["params"] == 0


def test_param_groups_use_their_learning_rates(base_dir):
    cfg = LoraPlusConfig(embed_lr=1e-5, norm_lr=3e-4)
    groups = {g["name"]: g for g in param_groups(_lora_plus(base_dir, cfg), cfg, lr=2e-4)}
    assert set(groups) == {"lora", "embeddings", "norms"}
    assert (groups["lora"]["lr"], groups["embeddings"]["lr"], groups["norms"]["lr"]) == (2e-4, 1e-5, 3e-4)


def test_save_load_merge_reproduce_the_trained_model(base_dir, tmp_path):
    model = _lora_plus(base_dir, scale_to=16384)
    ids = _train(model, LoraPlusConfig())
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=ids).logits
    save_adapter(model, tmp_path / "adapter", {"note": "test"})
    info = json.loads((tmp_path / "adapter" / "longrecall_adapter.json").read_text())
    assert info["note"] == "test" and info["positions"]["factor"] == 2

    loaded = load_adapter(str(base_dir), tmp_path / "adapter")  # the base folder is unscaled: load re-applies it
    assert loaded.get_base_model().config.rope_parameters["rope_type"] == "linear"
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, ref)

    merge_adapter(str(base_dir), tmp_path / "adapter", tmp_path / "merged")
    merged = load_model(str(tmp_path / "merged")).eval()
    assert merged.config.rope_parameters["factor"] == 2.0 and merged.config.max_position_embeddings == 16384
    assert merged.lm_head.weight is merged.model.embed_tokens.weight
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, ref, atol=1e-5)


def test_merge_main_uses_the_recorded_base_and_tokenizer(base_dir, tmp_path):
    model = _lora_plus(base_dir)
    _train(model, LoraPlusConfig())
    save_adapter(model, tmp_path / "adapter", tokenizer=load_tokenizer("default"))
    assert merge_main(["--adapter", str(tmp_path / "adapter"), "--output-dir", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").exists() and (tmp_path / "out" / "tokenizer.json").exists()


def test_bad_settings_are_user_errors(base_dir, tmp_path):
    with pytest.raises(UserError, match="not found"):
        _lora_plus(base_dir, LoraPlusConfig(targets=["c_attn"]))
    with pytest.raises(UserError, match="not an adapter folder"):
        load_adapter(str(base_dir), tmp_path)


@pytest.mark.parametrize("train_embeddings", [True, False])
def test_frozen_weights_in_bf16_give_the_same_autocast_step(base_dir, train_embeddings):
    """Storing the frozen linears in bf16 changes nothing under bf16 autocast (it casts them to bf16 anyway): the
    same loss and the same gradients, bit for bit; a head tied to a frozen embedding is left in fp32."""
    cfg = LoraPlusConfig(train_embeddings=train_embeddings)
    ids = torch.randint(0, VOCAB, (1, 24), generator=torch.Generator().manual_seed(2))

    def step(model):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model = _lora_plus(base_dir, cfg)
    loss, grads = step(model)
    model.zero_grad(set_to_none=True)
    assert store_frozen_bf16(model) > 0
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert model.get_input_embeddings().weight.dtype == torch.float32
    loss2, grads2 = step(model)
    assert torch.equal(loss, loss2) and grads.keys() == grads2.keys()
    assert all(torch.equal(grads[n], grads2[n]) for n in grads)
