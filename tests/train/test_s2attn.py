"""S²-Attn: exact pattern per head, no leak, one group = full attention, GQA, gradients, eval = SDPA, real models train."""
from __future__ import annotations

import copy
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from longrecall.errors import UserError
from longrecall.models import tiny_model
from longrecall.train.s2attn import (
    disable_s2attn,
    enable_s2attn,
    group_bounds,
    s2attn_forward,
    s2attn_reference_mask,
)

VOCAB = 64


def _module(group_size=None, group_fraction=0.25, training=True):
    m = torch.nn.Module()
    m.s2attn_group_size, m.s2attn_group_fraction = group_size, group_fraction
    return m.train(training)


def _qkv(n, heads=4, kv_heads=2, d=8, b=1, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=g) for h in (heads, kv_heads, kv_heads))
    return [t.requires_grad_(grad) for t in (q, k, v)]


def _dense(q, k, v, mask):
    """Plain masked softmax attention, [b, n, heads, d] out, the reference every path is checked against."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return scores.masked_fill(~mask, float("-inf")).softmax(-1).matmul(v).transpose(1, 2)


def _s2(q, k, v, group_size):
    out, weights = s2attn_forward(_module(group_size), q, k, v, None, scaling=q.shape[-1] ** -0.5)
    assert weights is None
    return out


def test_half_the_heads_shift_at_a_kv_group_boundary():
    from longrecall.train.s2attn import head_split

    assert head_split(12, 2) == (6, (0, 1), (1, 2))      # Qwen2-1.5B: exactly half
    assert head_split(32, 8) == (16, (0, 4), (4, 8))     # Llama 3 8B
    assert head_split(9, 3) == (6, (0, 2), (2, 3))       # SmolLM2-135M: 6 plain + 3 shifted, no k/v head shared
    assert head_split(8, 8) == (4, (0, 4), (4, 8)) and head_split(8, 1) == (4, (0, 1), (0, 1))


def test_reference_mask_by_hand():
    mask = s2attn_reference_mask(8, 4, 2)
    groups = {0: [[0, 1, 2, 3], [4, 5, 6, 7]], 1: [[0, 1], [2, 3, 4, 5], [6, 7]]}
    for head, parts in groups.items():
        want = torch.zeros(8, 8, dtype=torch.bool)
        for part in parts:
            for i in part:
                want[i, part[0] : i + 1] = True
        assert torch.equal(mask[head], want)
    assert group_bounds(12, 4, shifted=True) == [(0, 2), (2, 6), (6, 10), (10, 12)]
    assert group_bounds(12, 4, shifted=False) == [(0, 4), (4, 8), (8, 12)]


@pytest.mark.parametrize("n,g", [(13, 4), (97, 24), (11, 4), (10, 4), (4097, 1024), (5000, 2048), (7, 6), (3, 2)])
def test_a_length_off_the_group_multiple_gets_balanced_groups_never_a_one_token_group(n, g):
    # LongLoRA assumes N % G == 0; the old cut [0,G), [G,2G), ... left a last group of N % G tokens (one, for 13 and 4).
    plain, shifted = group_bounds(n, g, shifted=False), group_bounds(n, g, shifted=True)
    sizes = [e - s for s, e in plain]
    k = -(-n // g)
    assert len(plain) == k and max(sizes) - min(sizes) <= 1 and max(sizes) <= g and sum(sizes) == n
    assert [s for s, _ in plain] == [i * n // k for i in range(k)]
    # shifted heads: boundaries at the plain groups' midpoints, covering [0, n) with no gap or overlap
    assert shifted[0][0] == 0 and shifted[-1][1] == n and all(a[1] == b[0] for a, b in zip(shifted, shifted[1:]))
    assert [e for _, e in shifted[:-1]] == [(s + e) // 2 for s, e in plain if (s + e) // 2 > 0]
    inner = [e - s for s, e in shifted[1:-1]]
    assert not inner or max(inner) - min(inner) <= 2


def test_last_token_of_an_off_multiple_sequence_sees_its_group_not_only_itself():
    n, g = 13, 4
    q, k = torch.zeros(1, 2, n, n), torch.zeros(1, 2, n, n)
    v = torch.eye(n).expand(1, 2, n, n)
    seen = _s2(q, k, v, g).transpose(1, 2)[0] > 0  # [heads, query, key]
    assert int(seen[0, n - 1].sum()) == 4  # plain head: balanced groups 3, 3, 3, 4 (the old cut left token 12 alone)
    assert int(seen[1, n - 1].sum()) == 2  # shifted head: last half group [11, 13)


def test_group_fraction_keeps_four_groups_for_any_length():
    from longrecall.train.s2attn import resolve_group_size

    for n in (96, 97, 98, 99, 100, 4095, 4097):
        assert len(group_bounds(n, resolve_group_size(n, 0.25), shifted=False)) == 4, n
    assert resolve_group_size(30, 0.1) == 3  # no float round-up to 4
    assert resolve_group_size(40, group_size=16) == 16 and resolve_group_size(10, group_size=16) == 10


@pytest.mark.parametrize("n,g,heads,kv_heads", [(16, 4, 4, 2), (16, 8, 6, 6), (18, 4, 4, 1), (13, 4, 9, 3), (10, 6, 5, 5)])
def test_every_head_attends_exactly_its_reference_keys(n, g, heads, kv_heads):
    # Zero queries/keys make attention uniform over the allowed keys; one-hot values then show which keys those are.
    q = torch.zeros(1, heads, n, n)
    k = torch.zeros(1, kv_heads, n, n)
    v = torch.eye(n).expand(1, kv_heads, n, n)
    seen = _s2(q, k, v, g).transpose(1, 2)[0] > 0  # [heads, query, key]
    assert torch.equal(seen, s2attn_reference_mask(n, g, heads, kv_heads))


@pytest.mark.parametrize("n,g,heads,kv_heads", [(24, 8, 4, 2), (27, 8, 6, 2), (32, 8, 9, 3), (20, 6, 2, 1)])
def test_matches_dense_masked_reference(n, g, heads, kv_heads):
    q, k, v = _qkv(n, heads, kv_heads)
    want = _dense(q, k, v, s2attn_reference_mask(n, g, heads, kv_heads))
    torch.testing.assert_close(_s2(q, k, v, g), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n", [16, 17])
def test_one_group_is_full_causal_attention(n):
    q, k, v = _qkv(n, heads=4, kv_heads=2)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2)
    torch.testing.assert_close(_s2(q, k, v, n), full, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(_s2(q, k, v, 10 * n), full, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("n,g", [(24, 8), (27, 8), (30, 12)])
def test_no_token_sees_the_future(n, g):
    q, k, v = _qkv(n, heads=4, kv_heads=2)
    base = _s2(q, k, v, g)
    for t in range(1, n):
        q2, k2, v2 = (x.clone() for x in (q, k, v))
        for x in (q2, k2, v2):
            x[:, :, t:] = torch.randn_like(x[:, :, t:]) * 5
        assert torch.equal(_s2(q2, k2, v2, g)[:, :t], base[:, :t]), f"positions before {t} changed"


def test_gradients_flow_and_match_dense_reference():
    n, g = 24, 8
    q, k, v = _qkv(n, heads=6, kv_heads=2, grad=True)
    upstream = torch.randn(1, n, 6, 8, generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad((_s2(q, k, v, g) * upstream).sum(), (q, k, v))
    want = torch.autograd.grad((_dense(q, k, v, s2attn_reference_mask(n, g, 6, 2)) * upstream).sum(), (q, k, v))
    for a, b in zip(got, want):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_eval_mode_equals_plain_sdpa_model():
    plain = tiny_model(VOCAB)
    s2 = enable_s2attn(copy.deepcopy(plain), group_size=4)
    assert s2.config._attn_implementation == "longrecall_s2attn"
    ids = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(0))
    pad = torch.ones_like(ids)
    pad[1, :5] = 0  # left padding: eval keeps the padding mask
    plain.eval(), s2.eval()
    with torch.no_grad():
        assert torch.equal(s2(ids).logits, plain(ids).logits)
        assert torch.equal(s2(ids, attention_mask=pad).logits, plain(ids, attention_mask=pad).logits)
        s2.train(), plain.train()
        assert not torch.allclose(s2(ids).logits, plain(ids).logits), "training mode should use S²-Attn"
        disable_s2attn(s2)
        assert torch.equal(s2(ids).logits, plain(ids).logits)


def test_training_with_one_group_equals_full_attention_model():
    plain = tiny_model(VOCAB).train()
    s2 = enable_s2attn(copy.deepcopy(plain), group_size=64)
    ids = torch.randint(0, VOCAB, (1, 24), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s2(ids).logits, plain(ids).logits, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_tiny_models_train_one_step(arch):
    model = enable_s2attn(tiny_model(VOCAB, arch=arch)).train()
    ids = torch.randint(0, VOCAB, (1, 32), generator=torch.Generator().manual_seed(0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = model(ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_padding_in_training_is_refused():
    model = enable_s2attn(tiny_model(VOCAB)).train()
    ids = torch.randint(0, VOCAB, (2, 16))
    pad = torch.ones_like(ids)
    pad[0, -3:] = 0
    with pytest.raises(UserError, match="pack your data"):
        model(ids, attention_mask=pad)
    model(ids, attention_mask=torch.ones_like(ids))  # an all-ones mask is no padding


def test_sliding_window_must_cover_the_group():
    model = tiny_model(VOCAB, arch="mistral")
    model.config.sliding_window = 12
    ids = torch.randint(0, VOCAB, (1, 32))
    enable_s2attn(model, group_size=8).train()(ids)  # window 12 >= group 8: allowed, the mask is causal inside groups
    with pytest.raises(UserError, match="sliding window"):
        enable_s2attn(model, group_size=16).train()(ids)


def test_unsupported_architecture_and_bad_sizes_are_refused():
    with pytest.raises(UserError, match="S²-Attn supports"):
        enable_s2attn(types.SimpleNamespace(config=types.SimpleNamespace(model_type="gpt2")))
    with pytest.raises(UserError, match="group_size"):
        enable_s2attn(tiny_model(VOCAB), group_size=1)
    with pytest.raises(UserError, match="group_fraction"):
        enable_s2attn(tiny_model(VOCAB), group_fraction=0)


def _fake_flash_varlen(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, softmax_scale=None, causal=False):
    """flash-attn's varlen contract ([tokens, heads, d] packed, cu_seqlens boundaries) done with SDPA per segment."""
    assert torch.equal(cu_q, cu_k) and cu_q.dtype == torch.int32 and causal and int(cu_q[-1]) == q.shape[0]
    lengths = (cu_q[1:] - cu_q[:-1]).tolist()
    assert max_q == max_k == max(lengths) and min(lengths) > 0
    outs = [
        F.scaled_dot_product_attention(*(x[s:e].transpose(0, 1) for x in (q, k, v)), is_causal=True, scale=softmax_scale,
                                       enable_gqa=q.shape[1] != k.shape[1])  # flash-attn takes fewer k/v heads too
        for s, e in zip(cu_q[:-1].tolist(), cu_q[1:].tolist())
    ]
    return torch.cat(outs, dim=1).transpose(0, 1)


@pytest.mark.parametrize("n,g", [(24, 8), (27, 8)])
def test_cuda_varlen_path_boundaries_with_a_fake_kernel(monkeypatch, n, g):
    import longrecall.train.s2attn as s2attn

    monkeypatch.setitem(sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_varlen_func=_fake_flash_varlen))
    monkeypatch.setattr(s2attn, "_use_flash", lambda q: True)
    q, k, v = _qkv(n, heads=6, kv_heads=2, b=2)
    torch.testing.assert_close(_s2(q, k, v, g), _dense(q, k, v, s2attn_reference_mask(n, g, 6, 2)), atol=1e-5, rtol=1e-5)


def test_full_attention_block_pauses_s2attn_in_training_mode(tok):
    import torch

    from longrecall.models import tiny_model
    from longrecall.train.s2attn import enable_s2attn, full_attention

    model = tiny_model(len(tok))
    ids = torch.randint(0, len(tok), (1, 64))
    model.train()
    dense = model(input_ids=ids).logits
    enable_s2attn(model, group_size=16)
    sparse = model(input_ids=ids).logits
    with full_attention():
        paused = model(input_ids=ids).logits
    assert not torch.allclose(dense, sparse, atol=1e-5)
    assert torch.allclose(dense, paused, atol=1e-6)


def test_declared_torch_floor_has_sdpa_enable_gqa():
    # S²-Attn calls F.scaled_dot_product_attention(..., enable_gqa=...), which torch added in 2.5.
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    meta = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    torch_req = next(Requirement(r) for r in meta["project"]["dependencies"] if Requirement(r).name == "torch")
    assert not torch_req.specifier.contains("2.4.1") and torch_req.specifier.contains("2.5.0")
