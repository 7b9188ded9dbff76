"""LongLoRA's shifted sparse attention (S²-Attn), non-leaking, as a transformers attention function for training only.

    OMP_NUM_THREADS=1 PYTHONPATH=src python -m pytest tests/train/test_s2attn.py -q

Heads [0, H/2) attend causally inside groups [0,G), [G,2G), ...; heads [H/2, H) inside groups shifted by G/2
with boundaries 0, G/2, 3G/2, ..., N (the first and last pieces are their own smaller groups, so nothing rolls
around and no token sees the future). A sequence that fits in one group (G >= N) gets plain causal attention on
every head: with a single group there is nothing for the shift to bridge. In eval mode the function is plain SDPA,
so generation and evaluation always use full attention. Under grouped-query attention "half the heads" is taken
at the nearest k/v-group boundary (see head_split).

Lengths that are not a multiple of the group size. LongLoRA assumes N % G == 0 (its first version refused any
other N). Cutting [0,G), [G,2G), ... and leaving the remainder as the last group would give a group of a few tokens,
even one, that sees almost nothing. Here the sequence is cut into k = ceil(N / G) *balanced* groups instead: group
i is [i*N//k, (i+1)*N//k), so sizes differ by at most one token and never exceed G, and the shifted heads' boundaries
are the midpoints of those groups (0, mid_0, mid_1, ..., N). When G divides N this is exactly LongLoRA's pattern
(boundaries iG, shifted G/2 + iG). With group_fraction (no fixed group_size) G = ceil(N * fraction), so N/4 keeps
four groups whatever N is. See group_bounds.
"""
from __future__ import annotations

import contextlib
import math
import os

import torch
import torch.nn.functional as F

from ..errors import UserError

ATTN_NAME = "longrecall_s2attn"
SUPPORTED = ("llama", "mistral", "qwen2")
_PAD_FIX = (
    "S²-Attn trains on packed sequences with batch 1 / no padding: pack your data (longrecall data pretrain) "
    "or set s2attn: false"
)


def resolve_group_size(n: int, group_fraction: float = 0.25, group_size: int | None = None) -> int:
    """Largest group for a sequence of n tokens: fixed group_size, else ceil(n * group_fraction); at least 2, at most n."""
    g = group_size if group_size else math.ceil(round(n * group_fraction, 6))  # round: 0.1 * 30 is 3.0000000000000004
    return n if g < 2 or g >= n else g


def group_bounds(n: int, g: int, shifted: bool) -> list[tuple[int, int]]:
    """(start, end) of each group: k = ceil(n/g) balanced groups (sizes differ by at most one, none above g).

    Plain: [i*n//k, (i+1)*n//k). Shifted: boundaries at the plain groups' midpoints, 0, mid_0, ..., mid_(k-1), n (first
    and last pieces are half groups). With g dividing n: 0, g, 2g, ... and 0, g/2, 3g/2, ..., n, as in LongLoRA.
    """
    if g >= n:
        return [(0, n)]
    k = -(-n // g)
    edges = [i * n // k for i in range(k + 1)]
    if shifted:
        edges = [0, *((a + b) // 2 for a, b in zip(edges, edges[1:])), n]
    return [(s, e) for s, e in zip(edges, edges[1:]) if e > s]


def head_split(n_heads: int, n_kv_heads: int | None = None) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """(query heads on the plain groups, k/v heads of the plain part, k/v heads of the shifted part).

    Half the query heads shift, as in LongLoRA; under grouped-query attention the split moves to the nearest k/v
    group boundary (SmolLM2: 9 heads, 3 k/v heads -> 6 plain + 3 shifted), so each k/v head serves one pattern and
    SDPA's grouped kernel runs without copying k/v per query head. Models with an even k/v head count split exactly.
    """
    kv = n_kv_heads or n_heads
    if kv == n_heads or kv == 1:  # multi-head: split anywhere; multi-query: both parts read the one k/v head
        split = n_heads // 2
        return (split, (0, split), (split, n_heads)) if kv == n_heads else (split, (0, 1), (0, 1))
    kv_split = kv - kv // 2
    return kv_split * (n_heads // kv), (0, kv_split), (kv_split, kv)


def s2attn_reference_mask(n: int, group_size: int, n_heads: int, n_kv_heads: int | None = None) -> torch.Tensor:
    """Dense bool mask [heads, n, n] (True = query i may attend key j) of the pattern, for tests only."""
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    masks = []
    for shifted in (False, True):
        gid = torch.empty(n, dtype=torch.long)
        for i, (s, e) in enumerate(group_bounds(n, group_size, shifted)):
            gid[s:e] = i
        masks.append((gid[:, None] == gid[None, :]) & causal)
    half = head_split(n_heads, n_kv_heads)[0]
    return torch.stack([masks[0]] * half + [masks[1]] * (n_heads - half))


def _runs(bounds):
    """Consecutive groups of one length, as (start, count, length): each run is one strided view, no copy."""
    runs: list[list[int]] = []
    for s, e in bounds:
        if runs and runs[-1][2] == e - s and runs[-1][0] + runs[-1][1] * runs[-1][2] == s:
            runs[-1][1] += 1
        else:
            runs.append([s, 1, e - s])
    return runs


def _grouped_sdpa(q, k, v, bounds, scale, dropout, out):
    """Causal SDPA inside each group, written into out[:, :, heads] ((b, N, h, d), the layout the model wants).
    A run of m equal groups is the strided view (b*m, h, L, d) of q/k/v, so the fused kernel sees every group of the
    run at once and nothing is stacked or concatenated (the copies cost S²-Attn memory over full attention)."""
    b, h, _, d = q.shape
    for s, m, length in _runs(bounds):
        def groups(x):
            return x[:, :, s : s + m * length].unflatten(2, (m, length)).transpose(1, 2).reshape(b * m, x.shape[1], length, d)

        o = F.scaled_dot_product_attention(groups(q), groups(k), groups(v), dropout_p=dropout, is_causal=True, scale=scale,
                                           enable_gqa=q.shape[1] != k.shape[1])
        out[:, s : s + m * length].unflatten(1, (m, length)).copy_(o.unflatten(0, (b, m)).transpose(2, 3))


def _flash_varlen(q, k, v, halves, scale, dropout):
    """CUDA path: flash-attn's varlen kernel takes the group boundaries as cu_seqlens (one call per head half)."""
    from flash_attn import flash_attn_varlen_func

    b, h, n, d = q.shape
    outs = []
    for (h0, h1), (k0, k1), bounds in halves:
        if h1 == h0:
            continue
        starts = torch.tensor([s for s, _ in bounds] + [n], dtype=torch.int32, device=q.device)
        cu = torch.cat([starts[:-1] + i * n for i in range(b)] + [starts[-1:] + (b - 1) * n]).to(torch.int32)
        longest = max(e - s for s, e in bounds)
        flat = [x[:, a:e].transpose(1, 2).reshape(b * n, e - a, d) for x, (a, e) in ((q, (h0, h1)), (k, (k0, k1)), (v, (k0, k1)))]
        outs.append(flash_attn_varlen_func(*flat, cu, cu, longest, longest, dropout, softmax_scale=scale, causal=True))
    return torch.cat(outs, dim=1).reshape(b, n, h, d)


def _use_flash(q) -> bool:
    # LONGRECALL_S2ATTN_BACKEND=sdpa forces the fallback (to compare the two paths on a GPU).
    if not q.is_cuda or q.dtype not in (torch.float16, torch.bfloat16) or os.environ.get("LONGRECALL_S2ATTN_BACKEND") == "sdpa":
        return False
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def _check_mask(mask, bounds_sets):
    """A mask may only reach training if it is causal inside every group (e.g. a sliding window wider than G)."""
    if mask.dtype != torch.bool:
        raise UserError(_PAD_FIX)
    for bounds in bounds_sets:
        for s, e in bounds:
            tri = torch.ones(e - s, e - s, dtype=torch.bool, device=mask.device).tril()
            if not bool((mask[..., s:e, s:e] == tri).all()):
                raise UserError(_PAD_FIX)


_PAUSED = False


@contextlib.contextmanager
def full_attention():
    """Within this block S²-Attn steps aside for full attention, in training mode too (forward and backward)."""
    global _PAUSED
    previous, _PAUSED = _PAUSED, True
    try:
        yield
    finally:
        _PAUSED = previous


def s2attn_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The attention function: (b, H, N, d) q and (b, Hkv, N, d) k/v in, (b, N, H, d) out, like transformers' sdpa."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    n = query.shape[2]
    if not module.training or n < 2 or _PAUSED:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    if key.shape[2] != n:
        raise UserError("S²-Attn got a key/value cache in training mode: call model.eval() to generate, or pass use_cache=False")
    g = resolve_group_size(n, getattr(module, "s2attn_group_fraction", 0.25), getattr(module, "s2attn_group_size", None))
    window = kwargs.get("sliding_window")
    if window and window < g:
        raise UserError(f"S²-Attn group size {g} exceeds the model's sliding window {window}: set group_size <= {window}")
    h = query.shape[1]
    split, kv_plain, kv_shifted = head_split(h, key.shape[1])
    halves = [((0, split), kv_plain, group_bounds(n, g, False)), ((split, h), kv_shifted, group_bounds(n, g, True))]
    if attention_mask is not None:
        _check_mask(attention_mask, [bounds for _, _, bounds in halves])
    # Each part reads only its own k/v heads (grouped-query kernels, no per-query-head copies of k/v).
    if _use_flash(query):
        return _flash_varlen(query, key, value, halves, scaling, dropout), None
    out = query.new_empty(query.shape[0], n, h, query.shape[3])
    for (h0, h1), (k0, k1), bounds in halves:
        if h1 > h0:
            _grouped_sdpa(query[:, h0:h1], key[:, k0:k1], value[:, k0:k1], bounds, scaling, dropout, out[:, :, h0:h1])
    return out, None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, s2attn_forward)
    # The sdpa mask keeps padding masks for eval/generation (an unknown name would get no mask at all).
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _attention_modules(model):
    return [m for m in model.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "o_proj")]


def enable_s2attn(model, group_fraction: float = 0.25, group_size: int | None = None):
    """Switch a Llama/Mistral/Qwen2 model (or a peft wrapper of one) to S²-Attn for training; eval stays full attention."""
    base = _base(model)
    arch = getattr(base.config, "model_type", None)
    if arch not in SUPPORTED:
        raise UserError(f"S²-Attn supports {', '.join(SUPPORTED)}, not '{arch}': pick one of those models or set s2attn: false")
    if group_size is not None and group_size < 2:
        raise UserError(f"S²-Attn group_size must be >= 2, got {group_size}: raise it or leave it unset")
    if group_size is None and not 0 < group_fraction <= 1:
        raise UserError(f"S²-Attn group_fraction must be in (0, 1], got {group_fraction}: use 0.25 (LongLoRA's N/4)")
    modules = _attention_modules(base)
    if not modules:
        raise UserError(f"no attention modules found in {type(base).__name__}: S²-Attn needs a transformers decoder; set s2attn: false")
    _register()
    for m in modules:
        m.s2attn_group_fraction, m.s2attn_group_size = group_fraction, group_size
    base.set_attn_implementation(ATTN_NAME)
    return model


def disable_s2attn(model):
    """Back to plain SDPA attention (what evaluation and saving should see)."""
    base = _base(model)
    base.set_attn_implementation("sdpa")
    for m in _attention_modules(base):
        for attr in ("s2attn_group_fraction", "s2attn_group_size"):
            if hasattr(m, attr):
                delattr(m, attr)
    return model
