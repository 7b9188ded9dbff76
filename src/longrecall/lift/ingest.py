"""`longrecall lift ingest`: fine-tune an adapter (Gated Memory or LoRA) on one long input so the model can answer about it.

    longrecall lift ingest --input book.txt --model default --output-dir runs/lift-book --config configs/lift-cpu.yaml

A small hand loop rather than HF Trainer: the two-stage schedule (epochs over segments, then segments + QA) shares
one optimizer across stages, runs batch 1 with no padding and records per-step losses; with Trainer that would take
two Trainer objects and a shared optimizer, for no gain.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import load_config, to_dict
from ..data.lift import LiftDataConfig, build_lift_dataset, build_manifest, encode_record, head_tail, read_input, write_lift_dataset
from ..data.retain import RETAIN_KINDS
from ..errors import UserError
from ..io import write_json
from .folder import CONTEXT, MANIFEST
from .route import VOCABULARY, vocabulary
from .folder import load as load_ingested



@dataclass
class IngestConfig:
    """One LIFT ingest: data, adapter and schedule."""

    data: LiftDataConfig = field(default_factory=LiftDataConfig)
    """How the input becomes records (segments, contextualized segments, QA)."""
    adapter: str = "gated"
    """gated (Gated Memory, the method's adapter) or lora (peft LoRA)."""
    model: str = "default"
    """Base model: 'default' (embedded SmolLM2-135M-Instruct), a folder or an HF id."""
    seed: int = 0
    """Seed for adapter init and record order."""
    stage1_epochs: int = 2
    """Epochs over the segments (and contextualized segments) alone."""
    stage2_epochs: int = 2
    """Epochs over segments + contextualized segments + QA."""
    qa_repeat: int = 1
    """Times each QA record appears per stage-2 epoch (QA records are short: cheap to repeat)."""
    qa_batch: int = 1
    """Stage 2's chat records (QA, retain) trained this many to a step, right-padded (same kind in a step). Measured
    (benchmarks/bench_lift_step.py, one thread): 89 tokens/s for a ~60-token record alone, 129 four to a step (1.46x),
    119 for a 1024-token segment. Segments stay one a step."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0 = run the whole schedule); for smoke runs."""
    lr: float | None = None
    """Learning rate, constant; None = 1e-3 for gated, 2e-4 for lora."""
    lr_schedule: str = "constant"
    """constant (the method's) | linear: decays to 0 over the run. Measured: linear underfits the memory (recall 70% ->
    20% on one input, docs/results/lift16k/RUN.md)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    bf16: bool = True
    """bf16 autocast (roughly doubles CPU speed); master weights stay fp32."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: less memory, ~30% slower."""
    memory_mult: int = 2
    """Gated memory: hidden width of the memory MLP / head_dim."""
    gate: str = "closed"
    """Gated memory: closed (a fresh adapter is exactly the base model) | paper (the method's gate, 0.047 at start)."""
    gated_layers: list[int] | None = None
    """Gated memory: layer indices (None = all)."""
    lm_head_lora_rank: int = 0
    """Gated memory: rank of an extra LoRA on lm_head (authors: 2; 0 = none)."""
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    loss_eval_segments: int = 4
    """Segments on which the input loss is measured before and after training (0 = skip)."""
    save_data: bool = True
    """Also write the LIFT records into <output-dir>/data for inspection and reruns."""
    max_new_tokens: int = 48
    """Answer length for `lift ask` (and for the base model's replies to retain chats)."""
    gate_penalty: float = 0.0
    """Gated memory: weight of the penalty added to the loss of retain records (0 = none)."""
    gate_penalty_on: str = "gate"
    """gate: the mean |gate| (measured: the memory grows instead, and a gate of 0.006 still changed every chat);
    output: the mean squared change the adapter makes to each head's attention output, relative to it."""


def _learning_rate(cfg: IngestConfig) -> float:
    return cfg.lr if cfg.lr is not None else (1e-3 if cfg.adapter == "gated" else 2e-4)


def attach_adapter(model, cfg: IngestConfig):
    """Return the model with a fresh trainable adapter (only its parameters require grad)."""
    if cfg.adapter == "gated":
        from .gated_memory import GatedMemoryConfig, attach_gated_memory

        gm = GatedMemoryConfig(layers=cfg.gated_layers, memory_mult=cfg.memory_mult, lm_head_lora_rank=cfg.lm_head_lora_rank,
                               seed=cfg.seed, base_model=cfg.model, gate=cfg.gate)
        return attach_gated_memory(model, gm)
    if cfg.adapter == "lora":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(cfg.seed)
        lc = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=list(cfg.lora_targets))
        return get_peft_model(model, lc)
    raise UserError(f"adapter {cfg.adapter!r} unknown: pass --adapter gated or --adapter lora")


def _autocast(cfg: IngestConfig):
    from ..models import fast_bf16

    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16 and fast_bf16())  # emulated bf16 is ~5x slower


def _batch_loss(model, batch: dict[str, torch.Tensor], cfg: IngestConfig) -> torch.Tensor:
    """Mean loss over every labelled token of the batch."""
    with _autocast(cfg):
        return model(**batch).loss


@torch.no_grad()
def input_loss(model, encoded: list[tuple[list[int], list[int]]], cfg: IngestConfig) -> float:
    """Mean next-token loss over the first `loss_eval_segments` segments."""
    model.eval()
    batch = encoded[: cfg.loss_eval_segments]
    return sum(_batch_loss(model, _batch([e], 0), cfg).item() for e in batch) / max(len(batch), 1)


def schedule(parts: dict[str, list[dict]], cfg: IngestConfig) -> list[tuple[int, int, list[dict]]]:
    """(stage, epoch, records of one step) in training order: stage 1 over segments, stage 2 over segments + QA
    (+ retain); seeded shuffles. A stage-2 chat record waits for `qa_batch - 1` more of its kind (the epoch's last
    ones go short)."""
    rng = random.Random(cfg.seed)
    seg = parts["segments"] + parts.get("contextual", [])
    order = []
    for epoch in range(cfg.stage1_epochs):
        order += [(1, epoch, [r]) for r in rng.sample(seg, len(seg))]
    mix = seg + parts.get("qa", []) * cfg.qa_repeat + parts.get("retain", [])
    for epoch in range(cfg.stage2_epochs):
        e, waiting = cfg.stage1_epochs + epoch, {}
        for r in rng.sample(mix, len(mix)):
            if r["kind"] in ("segment", "contextual") or cfg.qa_batch <= 1:
                order.append((2, e, [r]))
                continue
            group = waiting.setdefault(r["kind"], [])
            group.append(r)
            if len(group) == cfg.qa_batch:
                order.append((2, e, waiting.pop(r["kind"])))
        order += [(2, e, group) for group in waiting.values()]
    return order[: cfg.max_steps] if cfg.max_steps else order


def _batch(encoded: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels (-100 on padding)."""
    width = max(len(i) for i, _ in encoded)
    pad = [width - len(i) for i, _ in encoded]
    return {"input_ids": torch.tensor([i + [pad_id] * n for (i, _), n in zip(encoded, pad)]),
            "attention_mask": torch.tensor([[1] * len(i) + [0] * n for (i, _), n in zip(encoded, pad)]),
            "labels": torch.tensor([l + [-100] * n for (_, l), n in zip(encoded, pad)])}


def check_schedule(cfg: IngestConfig) -> None:
    if cfg.lr_schedule not in ("constant", "linear"):
        raise UserError(f"lr_schedule {cfg.lr_schedule!r} unknown: pass --set lr_schedule=constant or linear")


def train(model, tokenizer, parts: dict[str, list[dict]], cfg: IngestConfig, progress: bool = True) -> list[dict]:
    """The hand loop: AdamW (lr constant or linear), clip; one record a step, or `qa_batch` chat records. Returns
    the loss history."""
    from tqdm.auto import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=_learning_rate(cfg), betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    order = schedule(parts, cfg)
    check_schedule(cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 if cfg.lr_schedule == "constant" else 1.0 - i / len(order))
    model.train()
    history = []
    bar = tqdm(order, desc="lift ingest", unit="step", disable=not progress)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens: dict[int, tuple[list[int], list[int]]] = {}  # by record: QA records come back qa_repeat times an epoch

    def encoded_once(record: dict) -> tuple[list[int], list[int]]:
        if id(record) not in tokens:
            tokens[id(record)] = encode_record(record, tokenizer)
        return tokens[id(record)]

    for step, (stage, epoch, records) in enumerate(bar):
        encoded = [encoded_once(r) for r in records]
        batch = _batch(encoded, pad_id)
        kind = records[0]["kind"]
        gate = None
        if cfg.gate_penalty and cfg.adapter == "gated" and kind in RETAIN_KINDS:
            from .gated_memory import collect_gates

            with collect_gates(model, cfg.gate_penalty_on) as terms:
                loss = _batch_loss(model, batch, cfg)
            gate = torch.stack(terms).mean()
            loss = loss + cfg.gate_penalty * gate
        else:
            loss = _batch_loss(model, batch, cfg)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        lr = opt.param_groups[0]["lr"]
        sched.step()
        opt.zero_grad(set_to_none=True)
        history.append({"step": step, "stage": stage, "epoch": epoch, "kind": kind, "tokens": sum(len(i) for i, _ in encoded), "lr": float(f"{lr:.3g}"),
                        "loss": round(loss.item(), 5)} | ({"records": len(records)} if len(records) > 1 else {})
                       | ({"gate": round(gate.item(), 5)} if gate is not None else {}))
        bar.set_postfix(stage=stage, loss=f"{loss.item():.3f}")
    model.eval()
    return history


@torch.no_grad()
def base_reply(model, tokenizer, messages: list[dict], max_new_tokens: int) -> str:
    """The base model's greedy reply (before any adapter is attached): the target of a retain chat."""
    ids = torch.tensor([tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def save_adapter(model, cfg: IngestConfig, out: Path) -> None:
    if cfg.adapter == "gated":
        from .gated_memory import save_gated_memory

        save_gated_memory(model, out)
    else:
        model.save_pretrained(str(out))


def ingest(input_path: str | Path, output_dir: str | Path, cfg: IngestConfig | None = None, model=None, tokenizer=None,
           endpoint=None, progress: bool = True) -> dict:
    """Build LIFT data from `input_path`, train the adapter, save it with a manifest; returns the manifest.
    `model`/`tokenizer` default to loading `cfg.model` (tests pass tiny ones)."""
    from ..models import load_model, load_tokenizer

    cfg = cfg or IngestConfig()
    check_schedule(cfg)  # before minutes of data building
    out = Path(output_dir)
    t0 = time.time()
    text, sample = read_input(input_path)
    tokenizer = tokenizer or load_tokenizer(cfg.model)
    model = model if model is not None else load_model(cfg.model)
    parts = build_lift_dataset(text, tokenizer, cfg.data, needles=sample, endpoint=endpoint,
                               base_reply=lambda messages: base_reply(model, tokenizer, messages, cfg.max_new_tokens))
    data_manifest = build_manifest(text, cfg.model, cfg.data, parts, tokenizer, str(input_path))
    if cfg.save_data:
        write_lift_dataset(out / "data", parts, data_manifest)
    model = attach_adapter(model, cfg)
    evals = [encode_record(r, tokenizer) for r in parts["segments"]]
    before = input_loss(model, evals, cfg) if cfg.loss_eval_segments else None
    history = train(model, tokenizer, parts, cfg, progress=progress)
    after = input_loss(model, evals, cfg) if cfg.loss_eval_segments else None
    save_adapter(model, cfg, out)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    head, tail = head_tail(ids, tokenizer, cfg.data.context_budget)
    write_json(out / CONTEXT, {"head": head, "tail": tail, "budget": cfg.data.context_budget})
    write_json(out / VOCABULARY, sorted(vocabulary(text)))  # the entity router's word set (lift/route.py)
    write_json(out / "longrecall.json", {"base_model": cfg.model, "method": "lift", "adapter": cfg.adapter})
    manifest = {
        "input": str(Path(input_path).resolve()), "input_sha256": data_manifest["input_sha256"], "input_tokens": len(ids),
        "base_model": cfg.model, "adapter": cfg.adapter, "settings": to_dict(cfg), "lr": _learning_rate(cfg),
        "counts": data_manifest["counts"], "token_stats": data_manifest["token_stats"], "steps": len(history),
        "input_loss_before": before, "input_loss_after": after, "seconds": round(time.time() - t0, 1), "loss_history": history,
    }
    write_json(out / MANIFEST, manifest)
    load_ingested.cache_clear()  # a re-ingest into the same folder must not answer from the old adapter
    return manifest


def add_arguments(parser) -> None:
    parser.add_argument("--input", required=True, help="long text file, or a .json sample from `longrecall niah generate`")
    parser.add_argument("--model", default=None, help="base model (default: the config's, i.e. the embedded SmolLM2)")
    parser.add_argument("--output-dir", required=True, help="adapter folder to write")
    parser.add_argument("--config", default=None, help="YAML ingest config, e.g. configs/lift-cpu.yaml")
    parser.add_argument("--adapter", choices=["gated", "lora"], default=None, help="adapter kind (default: the config's)")
    parser.add_argument("--qa", choices=["auto", "needles", "model", "cloze", "none"], default=None, help="QA source")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (data.segment_length=512)")


def parse_overrides(items: list[str]) -> dict:
    from ..config import parse_key_values

    return parse_key_values(items, "--set", typed=False)


def main(args) -> int:
    overrides = parse_overrides(args.set)
    for key, value in (("model", args.model), ("adapter", args.adapter), ("data.qa", args.qa)):
        if value is not None:
            overrides[key] = value
    cfg = load_config(IngestConfig, args.config, overrides)
    m = ingest(args.input, args.output_dir, cfg)
    loss = f"input loss {m['input_loss_before']:.3f} -> {m['input_loss_after']:.3f}, " if m["input_loss_before"] is not None else ""
    print(f"ingested {m['input_tokens']} tokens in {m['steps']} steps ({loss}{m['seconds']} s): {args.output_dir}")
    return 0
