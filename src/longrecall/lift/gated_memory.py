"""LIFT's Gated Memory adapter, attached to a transformers model with hooks (no model code copied).

    pytest tests/lift/test_gated_memory.py

Per attention layer and per query head, from the query *before* RoPE (the output of q_proj):
    memory  m = W2 · SiLU(W1 · q)                      (d -> 2d -> d, d = head_dim)
    gate    g = sigmoid(3 · (w4ᵀ · SiLU(W3 · q) − 1))   (d -> ⌊√d⌋ -> 1)
    o_proj input per head: (1 − g) · attention + g · m
A forward hook on q_proj keeps its output; a forward pre-hook on o_proj mixes. This works for Llama/Qwen2
(and any model whose attention calls q_proj then o_proj on [batch, seq, heads·head_dim]) whatever attention
function runs in between (SDPA, eager, S²-Attn), with grouped-query attention (the gate sees query heads).

Initialisation (chosen here): W1, W3 as nn.Linear's default; W2 = 0 and w4 = 0, so at init m = 0 and the
gradient first reaches W2 and w4 (like LoRA's zero B). With the method's gate, w4 = 0 gives g = sigmoid(−3) ≈ 0.047
for every token: a fresh adapter scales all attention by 0.953. The default gate here (`gate: closed`) subtracts
that offset, g = (sigmoid(3 · (w4ᵀ · SiLU(W3 · q) − 1)) − sigmoid(−3)) / (1 − sigmoid(−3)), so it is exactly 0 at
init (a fresh adapter is the base model bit for bit), reaches 1 at the same logits as the method's, and has the
same gradient at the start. Adapters saved without a `gate` key are the method's (`gate: paper`).
`set_gate_scale(model, 0)` closes the gate: the hooks then leave the model untouched (base model exactly).
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UserError

ADAPTER_TYPE = "gated_memory"
GATES = ("closed", "paper")
WEIGHTS_NAME = "gated_memory.safetensors"
CONFIG_NAME = "adapter_config.json"


@dataclass
class GatedMemoryConfig:
    """Shape of the adapter; stored in adapter_config.json."""

    layers: list[int] | None = None
    """Layer indices that get a memory (None: every layer)."""
    memory_mult: int = 2
    """Hidden width of the memory MLP as a multiple of head_dim (the method: 2)."""
    lm_head_lora_rank: int = 0
    """Rank of an optional LoRA on lm_head (the authors used 2; 0 = none)."""
    lm_head_lora_alpha: float = 4.0
    """LoRA scale numerator: delta = (alpha / rank) · B·A·x."""
    seed: int = 0
    """Seed for the adapter's initial weights (independent of the global RNG)."""
    gate: str = "closed"
    """closed: the gate minus its value at w4 = 0 (0 at init: a fresh adapter is the base model); paper: the method's."""
    base_model: str = ""
    """Name or folder of the base model, recorded for `load`."""
    extra: dict = field(default_factory=dict)
    """Free-form notes saved alongside (e.g. the ingest that produced it)."""


class GatedMemory(nn.Module):
    """Memory and gate for the `heads` query heads of one attention layer; per-head weights."""

    def __init__(self, heads: int, head_dim: int, memory_mult: int = 2, generator: torch.Generator | None = None,
                 gate: str = "closed"):
        super().__init__()
        if gate not in GATES:
            raise UserError(f"unknown gate '{gate}': use {' or '.join(GATES)}")
        self.heads, self.head_dim, self.gate = heads, head_dim, gate
        hidden, gate_hidden = memory_mult * head_dim, math.isqrt(head_dim)
        self.w1 = nn.Parameter(_linear_init((heads, head_dim, hidden), head_dim, generator))
        self.w2 = nn.Parameter(torch.zeros(heads, hidden, head_dim))
        self.w3 = nn.Parameter(_linear_init((heads, head_dim, gate_hidden), head_dim, generator))
        self.w4 = nn.Parameter(torch.zeros(heads, gate_hidden))
        self.gate_scale = 1.0
        self.record: list[float] | None = None  # set by record_gates
        self.penalty: list[torch.Tensor] | None = None  # set by collect_gates: one differentiable term per forward
        self.penalty_on = "gate"  # gate: mean |gate|; output: mean squared change of the head's output, relative
        self._query: torch.Tensor | None = None  # pre-RoPE query of the current forward, set by the q_proj hook

    def forward(self, query: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """query, attn: [..., heads·head_dim] -> mixed [..., heads·head_dim]."""
        shape = attn.shape
        q = query.reshape(*shape[:-1], self.heads, self.head_dim).to(self.w1.dtype)
        memory = torch.einsum("...hk,hkd->...hd", F.silu(torch.einsum("...hd,hdk->...hk", q, self.w1)), self.w2)
        logit = torch.einsum("...hk,hk->...h", F.silu(torch.einsum("...hd,hdk->...hk", q, self.w3)), self.w4)
        g = torch.sigmoid(3.0 * (logit - 1.0))
        if self.gate == "closed":  # the offset is computed by the same kernel on a same-shaped tensor: exactly 0 at w4 = 0
            off = torch.sigmoid(torch.full_like(logit, -3.0))
            g = (g - off) / (1.0 - off)
        if self.penalty is not None and self.penalty_on == "gate":
            self.penalty.append(g.abs().mean())
        gate = (g * self.gate_scale).unsqueeze(-1)
        if self.record is not None:  # gate statistics: the mean over this forward's tokens and heads
            self.record.append(float(gate.detach().float().mean()))
        a = attn.reshape(*shape[:-1], self.heads, self.head_dim)
        if self.penalty is not None and self.penalty_on == "output":
            # what the adapter changes, relative to attention's own output: a small gate times a large memory counts
            change = (gate * (memory - a)).float().pow(2).sum(-1) / a.float().pow(2).sum(-1).clamp_min(1e-6)
            self.penalty.append(change.mean())
        mixed = (1.0 - gate) * a + gate * memory
        return mixed.reshape(shape).to(attn.dtype)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}, memory={self.w1.shape[-1]}, gate={self.w3.shape[-1]} ({self.gate})"


class LmHeadLoRA(nn.Module):
    """A low-rank delta added to lm_head's logits (B = 0 at init, so it starts as a no-op)."""

    def __init__(self, hidden: int, vocab: int, rank: int, alpha: float, generator: torch.Generator | None = None):
        super().__init__()
        self.a = nn.Parameter(_linear_init((rank, hidden), hidden, generator))
        self.b = nn.Parameter(torch.zeros(vocab, rank))
        self.scale = alpha / max(rank, 1)
        self.gate_scale = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.a.dtype) @ self.a.t() @ self.b.t()) * (self.scale * self.gate_scale)


def _linear_init(shape: tuple[int, ...], fan_in: int, generator: torch.Generator | None) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default: kaiming_uniform(a=√5) reduces to U(−1/√fan_in, 1/√fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Attention modules in layer order: those with q_proj, o_proj and head_dim (Llama, Qwen2, Mistral, ...)."""
    found = [m for m in model.modules() if all(hasattr(m, a) for a in ("q_proj", "o_proj", "head_dim"))]
    if not found:
        raise UserError(f"{type(model).__name__} has no attention with q_proj/o_proj: gated memory supports Llama-like models; use --adapter lora")
    return found


def _q_hook(memory: GatedMemory):
    def hook(_module, _inputs, output):
        memory._query = output
    return hook


def _o_pre_hook(memory: GatedMemory):
    def hook(_module, args):
        query, memory._query = memory._query, None
        if memory.gate_scale == 0.0 or query is None:
            return None  # closed gate: leave the model exactly as it is
        return (memory(query, args[0]), *args[1:])
    return hook


def _lm_head_hook(lora: LmHeadLoRA):
    def hook(_module, args, output):
        return output if lora.gate_scale == 0.0 else output + lora(args[0]).to(output.dtype)
    return hook


def attach_gated_memory(model: nn.Module, cfg: GatedMemoryConfig | None = None) -> nn.Module:
    """Add memory+gate modules and hooks; freeze everything else. Returns the same model (changed in place)."""
    cfg = cfg or GatedMemoryConfig()
    if getattr(model, "_gated_memory_handles", None):
        raise UserError("this model already has a gated memory attached: call detach(model) first")
    attns = attention_modules(model)
    layers = list(range(len(attns))) if cfg.layers is None else list(cfg.layers)
    if any(i < 0 or i >= len(attns) for i in layers):
        raise UserError(f"gated memory layers {layers} out of range 0..{len(attns) - 1}: fix `layers` in the config")
    ref = next(model.parameters())
    gen = torch.Generator().manual_seed(cfg.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    handles = []
    for i in layers:
        attn = attns[i]
        heads = attn.q_proj.out_features // attn.head_dim
        attn.gated_memory = GatedMemory(heads, attn.head_dim, cfg.memory_mult, gen, cfg.gate).to(device=ref.device, dtype=ref.dtype)
        handles.append(attn.q_proj.register_forward_hook(_q_hook(attn.gated_memory)))
        handles.append(attn.o_proj.register_forward_pre_hook(_o_pre_hook(attn.gated_memory)))
    if cfg.lm_head_lora_rank:
        head = model.get_output_embeddings()
        model.lm_head_lora = LmHeadLoRA(head.in_features, head.out_features, cfg.lm_head_lora_rank, cfg.lm_head_lora_alpha, gen).to(
            device=ref.device, dtype=ref.dtype
        )
        handles.append(head.register_forward_hook(_lm_head_hook(model.lm_head_lora)))
    model._gated_memory_handles = handles
    model._gated_memory_config = cfg
    return model


def _adapter_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (GatedMemory, LmHeadLoRA))]


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter's parameters, under their names in the model."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if ".gated_memory." in n or n.startswith("lm_head_lora.")}


@torch.no_grad()
def gate_means(model: nn.Module, batches: list[torch.Tensor]) -> list[float]:
    """Mean gate per gated layer (layer order) over the tokens of each prompt in `batches` ([1, n] token ids),
    each prompt weighted equally: how far the adapter opens on this kind of input."""
    mems = [a.gated_memory for a in attention_modules(model) if hasattr(a, "gated_memory")]
    if not mems:
        raise UserError("no gated memory attached to this model: gate statistics need a gated adapter (--adapter gated)")
    for m in mems:
        m.record = []
    try:
        for ids in batches:
            model(ids)
        return [sum(m.record) / max(1, len(m.record)) for m in mems]
    finally:
        for m in mems:
            m.record = None


@contextlib.contextmanager
def collect_gates(model: nn.Module, on: str = "gate") -> Iterator[list[torch.Tensor]]:
    """Inside the block, each gated layer's forward appends one differentiable penalty term: its mean |gate| (on
    "gate"), or the mean squared change it makes to the attention output, relative to that output (on "output")."""
    if on not in ("gate", "output"):
        raise UserError(f"gate_penalty_on {on!r} unknown: use gate or output")
    mods = [m for m in model.modules() if isinstance(m, GatedMemory)]
    terms: list[torch.Tensor] = []
    for m in mods:
        m.penalty, m.penalty_on = terms, on
    try:
        yield terms
    finally:
        for m in mods:
            m.penalty, m.penalty_on = None, "gate"


def set_gate_scale(model: nn.Module, scale: float) -> None:
    """Scale every gate (and the lm_head LoRA); 0 closes the adapter and restores the base model exactly."""
    for m in _adapter_modules(model):
        m.gate_scale = float(scale)


def detach(model: nn.Module) -> nn.Module:
    """Remove hooks and adapter modules; the base weights were never changed. Re-enables their gradients."""
    for h in getattr(model, "_gated_memory_handles", []):
        h.remove()
    for attn in attention_modules(model):
        if hasattr(attn, "gated_memory"):
            del attn.gated_memory
    if hasattr(model, "lm_head_lora"):
        del model.lm_head_lora
    model._gated_memory_handles = []
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def save_gated_memory(model: nn.Module, directory: str | Path) -> Path:
    """Write adapter weights (safetensors) and adapter_config.json into `directory`, like a peft adapter."""
    from safetensors.torch import save

    from ..io import atomic_open, write_json

    cfg: GatedMemoryConfig = getattr(model, "_gated_memory_config", None)
    if cfg is None:
        raise UserError("no gated memory attached to this model: call attach_gated_memory first")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    attns = attention_modules(model)
    meta = asdict(cfg) | {
        "type": ADAPTER_TYPE,
        "head_dim": attns[0].head_dim,
        "num_layers": len(attns),
        "layers": [i for i, a in enumerate(attns) if hasattr(a, "gated_memory")],
        "base_model": cfg.base_model or getattr(model.config, "_name_or_path", ""),
    }
    state = {k: v.cpu() for k, v in adapter_state_dict(model).items()}
    with atomic_open(directory / WEIGHTS_NAME, "wb") as fh:
        fh.write(save(state, metadata={"format": "pt", "type": ADAPTER_TYPE}))
    write_json(directory / CONFIG_NAME, meta)
    return directory


def read_adapter_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_NAME
    if not path.exists():
        raise UserError(f"{path} not found: pass the folder written by `longrecall lift ingest --adapter gated`")
    meta = json.loads(path.read_text())
    if meta.get("type") != ADAPTER_TYPE:
        raise UserError(f"{directory} holds a {meta.get('peft_type') or meta.get('type')!r} adapter, not gated_memory: load it with peft")
    return meta


def load_gated_memory(model: nn.Module, directory: str | Path) -> nn.Module:
    """Attach a gated memory shaped as saved in `directory` and load its weights (strict)."""
    from safetensors.torch import load_file

    meta = read_adapter_config(directory)
    attns = attention_modules(model)
    if meta["head_dim"] != attns[0].head_dim or meta["num_layers"] != len(attns):
        raise UserError(
            f"adapter in {directory} is for {meta['num_layers']} layers x head_dim {meta['head_dim']}, this model has "
            f"{len(attns)} x {attns[0].head_dim}: load it on its base model {meta.get('base_model')!r}"
        )
    names = {f.name for f in fields(GatedMemoryConfig)}
    meta.setdefault("gate", "paper")  # saved before the closed gate existed: the method's gate, as trained
    attach_gated_memory(model, GatedMemoryConfig(**{k: v for k, v in meta.items() if k in names}))
    state = load_file(str(Path(directory) / WEIGHTS_NAME))
    own = adapter_state_dict(model)
    if set(state) != set(own):
        raise UserError(f"{directory}/{WEIGHTS_NAME} does not match its adapter_config.json: re-run the ingest that wrote it")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
    return model
