"""Gated Memory adapter: closed gate = base model, init close to base, only the adapter trains, save/load exact."""
import json

import pytest
import torch

from longrecall.errors import UserError
from longrecall.lift.gated_memory import (
    GatedMemoryConfig,
    adapter_state_dict,
    attach_gated_memory,
    detach,
    load_gated_memory,
    save_gated_memory,
    set_gate_scale,
)
from longrecall.models import tiny_model

VOCAB = 64
ARCHS = ["llama", "qwen2"]


def _ids(seed=0, n=24):
    return torch.randint(0, VOCAB, (2, n), generator=torch.Generator().manual_seed(seed))


def _logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(ids).logits


def _train(model, steps=2, lr=1e-2):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=1e-4)
    model.train()
    for s in range(steps):
        ids = _ids(seed=100 + s)
        loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()


def _trained(arch, lora_rank=0):
    model = tiny_model(VOCAB, arch=arch)
    attach_gated_memory(model, GatedMemoryConfig(seed=1, lm_head_lora_rank=lora_rank))
    _train(model, steps=3)
    return model


@pytest.mark.parametrize("arch", ARCHS)
def test_closed_gate_equals_base_exactly(arch):
    ids = _ids()
    base = _logits(tiny_model(VOCAB, arch=arch), ids)
    model = _trained(arch, lora_rank=2)
    assert not torch.equal(_logits(model, ids), base)  # the trained adapter does change the output ...
    set_gate_scale(model, 0.0)
    assert torch.equal(_logits(model, ids), base)  # ... and closing it restores the base model bit for bit
    set_gate_scale(model, 1.0)
    detach(model)
    assert torch.equal(_logits(model, ids), base)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_fresh_adapter_is_the_base_model_bit_for_bit_and_still_learns(arch):
    ids = _ids()
    ref = _logits(tiny_model(VOCAB, arch=arch), ids)
    model = attach_gated_memory(tiny_model(VOCAB, arch=arch), GatedMemoryConfig(seed=3))
    assert torch.equal(_logits(model, ids), ref)  # the closed gate is exactly 0 at init: no scaling of attention
    gm = model.model.layers[0].self_attn.gated_memory
    big = {"logit": torch.full((2, gm.heads), 50.0)}
    g = torch.sigmoid(3.0 * (big["logit"] - 1.0))
    off = torch.sigmoid(torch.tensor(-3.0))
    assert torch.allclose((g - off) / (1 - off), torch.ones_like(g))  # fully open at the same logits as the method's
    _train(model, steps=3)
    assert gm.w4.abs().sum() > 0 and not torch.equal(_logits(model, ids), ref)  # the gate's weights do get gradient


@pytest.mark.parametrize("arch", ARCHS)
def test_the_paper_gate_starts_at_sigmoid_minus_3_and_close_to_base(arch):
    ids = _ids()
    base = tiny_model(VOCAB, arch=arch)
    ref = _logits(base, ids)
    model = attach_gated_memory(tiny_model(VOCAB, arch=arch), GatedMemoryConfig(gate="paper"))
    attn = model.model.layers[0].self_attn
    gm = attn.gated_memory
    q = torch.randn(3, gm.heads * gm.head_dim)
    a = torch.randn(3, gm.heads * gm.head_dim)
    # w2 = w4 = 0 at init: memory is 0 and the gate is sigmoid(-3) for every token, so output = (1 - 0.0474) * attention
    assert torch.allclose(gm(q, a), a * (1 - torch.sigmoid(torch.tensor(-3.0))), atol=1e-6)
    out = _logits(model, ids)
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()
    assert (out.softmax(-1) - ref.softmax(-1)).abs().max() < 0.02


@pytest.mark.parametrize("arch", ARCHS)
def test_only_memory_and_gate_move_after_two_steps(arch):
    model = tiny_model(VOCAB, arch=arch)
    attach_gated_memory(model, GatedMemoryConfig(lm_head_lora_rank=2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(adapter_state_dict(model))
    assert all(".gated_memory." in n or n.startswith("lm_head_lora.") for n in trainable)
    _train(model, steps=2)
    for n, p in model.named_parameters():
        moved = not torch.equal(p, before[n])
        assert moved == (n in trainable), n
    # GQA: one memory per query head (4 heads over 2 kv heads), gate hidden = floor(sqrt(head_dim))
    gm = model.model.layers[0].self_attn.gated_memory
    assert gm.w1.shape == (4, 8, 16) and gm.w3.shape == (4, 8, 2) and gm.w4.shape == (4, 2)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_reproduces_outputs_exactly(arch, tmp_path):
    ids = _ids()
    model = _trained(arch, lora_rank=2)
    want = _logits(model, ids)
    save_gated_memory(model, tmp_path / "adapter")
    meta = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert meta["type"] == "gated_memory" and meta["head_dim"] == 8 and meta["layers"] == [0, 1]
    fresh = load_gated_memory(tiny_model(VOCAB, arch=arch), tmp_path / "adapter")
    assert torch.equal(_logits(fresh, ids), want)


def test_subset_of_layers_and_errors(tmp_path):
    model = attach_gated_memory(tiny_model(VOCAB), GatedMemoryConfig(layers=[1]))
    assert not hasattr(model.model.layers[0].self_attn, "gated_memory")
    assert hasattr(model.model.layers[1].self_attn, "gated_memory")
    with pytest.raises(UserError, match="already"):
        attach_gated_memory(model)
    with pytest.raises(UserError, match="out of range"):
        attach_gated_memory(tiny_model(VOCAB), GatedMemoryConfig(layers=[5]))
    save_gated_memory(model, tmp_path / "a")
    with pytest.raises(UserError, match="layers x head_dim"):
        load_gated_memory(tiny_model(VOCAB, layers=3), tmp_path / "a")


def test_generate_with_kv_cache_matches_full_forward():
    model = _trained("llama")
    ids = _ids()[:1, :8]
    out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    # greedy decoding with a cache must pick the argmax of a full forward over the same prefix at every step
    for t in range(ids.shape[1], out.shape[1]):
        assert _logits(model, out[:, :t])[0, -1].argmax() == out[0, t]


def test_works_under_the_s2attn_attention_function():
    s2 = pytest.importorskip("longrecall.train.s2attn")
    ids = _ids(n=32)
    base = s2.enable_s2attn(tiny_model(VOCAB), group_size=8).train()
    model = _trained("llama")
    s2.enable_s2attn(model, group_size=8).train()
    with torch.no_grad():
        ref = base(ids).logits
        assert not torch.equal(model(ids).logits, ref)
        set_gate_scale(model, 0.0)
        assert torch.equal(model(ids).logits, ref)  # the hooks sit outside the attention function, whichever runs
    set_gate_scale(model, 1.0)
    model(ids, labels=ids).loss.backward()
    assert model.model.layers[0].self_attn.gated_memory.w2.grad.abs().sum() > 0


def test_an_adapter_saved_before_the_closed_gate_loads_with_the_method_gate(tmp_path):
    model = attach_gated_memory(tiny_model(VOCAB, arch="llama"), GatedMemoryConfig(seed=1, gate="paper"))
    _train(model, steps=2)
    ids = _ids()
    want = _logits(model, ids)
    save_gated_memory(model, tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    del meta["gate"]  # as written by earlier versions
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    loaded = load_gated_memory(tiny_model(VOCAB, arch="llama"), tmp_path)
    assert loaded.model.layers[0].self_attn.gated_memory.gate == "paper"
    assert torch.equal(_logits(loaded, ids), want)


def test_an_unknown_gate_is_one_line_naming_the_choices():
    with pytest.raises(UserError, match="use closed or paper"):
        attach_gated_memory(tiny_model(VOCAB, arch="llama"), GatedMemoryConfig(gate="open"))


@pytest.mark.integration
def test_a_fresh_adapter_on_the_real_model_gives_its_outputs_bit_for_bit():
    from longrecall.models import load_model, load_tokenizer

    tok = load_tokenizer("default")
    ids = tok("Kofi keeps the violin in locker 4417. Where is the violin?", return_tensors="pt")["input_ids"]
    ref = _logits(load_model("default", dtype="float32"), ids)
    model = attach_gated_memory(load_model("default", dtype="float32"), GatedMemoryConfig(seed=0))
    assert torch.equal(_logits(model, ids), ref)


def test_gate_means_are_zero_fresh_and_move_with_training():
    from longrecall.lift.gated_memory import gate_means

    model = attach_gated_memory(tiny_model(VOCAB, arch="llama"), GatedMemoryConfig(seed=1))
    prompts = [_ids(seed=s)[:1] for s in range(3)]
    fresh = gate_means(model, prompts)
    assert len(fresh) == len(model.model.layers) and all(g == 0.0 for g in fresh)
    _train(model, steps=3, lr=5e-2)
    trained = gate_means(model, prompts)
    assert any(g != 0.0 for g in trained)
    assert model.model.layers[0].self_attn.gated_memory.record is None  # recording stops afterwards
    with pytest.raises(UserError, match="gated adapter"):
        gate_means(tiny_model(VOCAB, arch="llama"), prompts)
