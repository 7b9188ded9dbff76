"""The LongLoRA recipe: LoRA+ with S²-Attn and position scaling, on packed long text and chat SFT, on transformers' Trainer.

    longrecall train longlora --config configs/longlora-cpu-smoke.yaml [--output-dir DIR] [--set key=value ...]

Trainer brings checkpoints, exact resume, bf16 autocast, gradient checkpointing, a tqdm bar and `accelerate launch`
(configs/accelerate/); this file adds the data (packed blocks with loss on every token, chat with loss on the final
assistant turn), the chunked loss, the LoRA+ learning-rate groups and the outputs (adapter/, train_log.jsonl,
loss.png). TRL's SFTTrainer is not used: its assistant-only loss needs chat templates with generation tags, which
SmolLM2's has not, and it takes no pre-packed blocks.
"""
from __future__ import annotations

import argparse
import json
import os
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import parse_key_values, load_config, to_dict
from ..errors import UserError
from ..io import atomic_open, read_jsonl, write_jsonl
from ..models import train_bf16
from .lora_plus import (LoraPlusConfig, apply_lora_plus, format_report, param_groups, store_frozen_bf16, trainable_report,
                        write_adapter_info)
from .losses import IGNORE_INDEX, chunked_lm_loss
from .positions import METHODS


@dataclass
class LongLoraConfig:
    model: str = "default"
    """Base model: 'default' (embedded SmolLM2-135M-Instruct), a local folder or a hub id."""
    pretrain: str | None = None
    """JSONL of packed blocks {"input_ids": [...]} or documents {"text": ...} (joined with EOS, packed); loss on all tokens."""
    sft: str | None = None
    """JSONL of chat records {"messages": [...]} ending with the assistant turn; loss on that turn only."""
    mix: float = 0.5
    """Share of SFT samples when both files are given (the smaller side repeats, seeded)."""
    max_length: int = 2048
    """Longest training sequence in tokens: pretrain blocks are cut to it, longer SFT records are dropped."""
    s2attn: bool = True
    """Shifted sparse attention while training (evaluation always uses full attention)."""
    s2attn_sft: bool = False
    """S²-Attn on chat (SFT) records too. Off by default: measured on SmolLM2, it hides the needle from the answer
    during training (answer loss 0.85 -> 3.5), so chats train with full attention and S²-Attn serves the long
    next-token blocks, where LongLoRA uses it."""
    group_fraction: float = 0.25
    """S²-Attn group size as a fraction of each sequence (LongLoRA: N/4)."""
    group_size: int | None = None
    """Fixed S²-Attn group size in tokens (overrides group_fraction)."""
    target_length: int | None = None
    """Context to scale RoPE positions to (factor ceil(target/native)); None keeps the native positions."""
    scaling_method: str = "linear"
    """Position scaling: 'linear' (position interpolation, LongLoRA) or 'yarn'."""
    continue_from: str | None = None
    """An adapter folder this recipe wrote (LoRA, embedding and norms) whose weights start this run: a second phase,
    e.g. a short-chat phase continued at 4k. Same base, LoRA shape and position scaling, refused in one line if not;
    the optimizer starts fresh, and the new adapter stands alone."""
    lora: LoraPlusConfig = field(default_factory=LoraPlusConfig)
    """LoRA+ settings: rank, alpha, dropout, targets, mlp, train_embeddings, train_norms, embed_lr, norm_lr."""
    lr: float = 2e-4
    """Peak learning rate (constant after warmup)."""
    weight_decay: float = 0.0
    """AdamW weight decay (LongLoRA: 0)."""
    warmup_steps: int = 20
    """Linear warmup steps before the constant learning rate."""
    max_steps: int = 100
    """Optimizer steps (epochs repeat the data as needed)."""
    grad_accum: int = 1
    """Sequences per optimizer step (batch is always 1 packed sequence; losses are token-weighted)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    bf16: bool = True
    """bf16 autocast (on CPU too: about 2x faster here); trainable weights and optimizer stay fp32, frozen linear
    weights are stored in bf16 in a one-process run (lora_plus.store_frozen_bf16: the same math under autocast)."""
    gradient_checkpointing: bool = True
    """Recompute layer activations in backward: memory for long sequences at ~30% more compute."""
    loss_chunk_size: int = 2048
    """Tokens per chunk of the lm_head + cross-entropy (never the full N x vocab logits at once)."""
    save_steps: int = 50
    """Checkpoint every this many steps (resume is automatic from the latest in output_dir)."""
    save_total_limit: int = 2
    """Checkpoints kept on disk."""
    logging_steps: int = 1
    """Log loss / lr / grad norm every this many steps."""
    seed: int = 0
    """Seed for LoRA init, data mixing and data order."""
    output_dir: str = "runs/longlora"
    """Where checkpoints, adapter/, train_log.jsonl, loss.png and config.yaml go."""


def validate(cfg: LongLoraConfig) -> LongLoraConfig:
    """Refuse settings that cannot train, each with the fix."""
    checks = [
        (cfg.pretrain or cfg.sft, "no training data: set sft: and/or pretrain: to a JSONL file (make them with `longrecall data`)"),
        (0.0 <= cfg.mix <= 1.0, f"mix must be in [0, 1], got {cfg.mix}: it is the share of SFT samples"),
        (cfg.max_length >= 16, f"max_length {cfg.max_length} is too short: use >= 16 tokens"),
        (cfg.lr > 0 and math.isfinite(cfg.lr), f"lr must be a positive number, got {cfg.lr}: use 2e-4"),
        (cfg.max_steps >= 1 and cfg.grad_accum >= 1 and cfg.save_steps >= 1, "max_steps, grad_accum and save_steps must be >= 1"),
        (cfg.warmup_steps >= 0, f"warmup_steps must be >= 0, got {cfg.warmup_steps}"),
        (cfg.scaling_method in METHODS, f"scaling_method must be one of {', '.join(METHODS)}, got '{cfg.scaling_method}'"),
        (0 < cfg.group_fraction <= 1, f"group_fraction must be in (0, 1], got {cfg.group_fraction}: use 0.25"),
        (cfg.target_length is None or cfg.target_length >= cfg.max_length, "target_length must be >= max_length (or unset)"),
        (cfg.loss_chunk_size >= 1, "loss_chunk_size must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    return cfg


# ---------------------------------------------------------------- data (pure)

def _ids(out) -> list[int]:
    # A flat list with transformers 5.24; other versions have returned a BatchEncoding or a nested list.
    if hasattr(out, "keys") and "input_ids" in out:
        out = out["input_ids"]
    return list(out[0] if out and isinstance(out[0], list) else out)


def chat_example(tokenizer, messages: list[dict], max_length: int) -> dict | None:
    """Chat-template tokens; labels are -100 up to and including the final assistant header. None if too long."""
    if not messages or messages[-1].get("role") != "assistant":
        raise UserError("an SFT record must end with an assistant message: fix the data (messages[-1].role == 'assistant')")
    prompt = _ids(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=False))
    full = _ids(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))
    if full[: len(prompt)] != prompt:
        raise UserError("the chat template renders the prompt differently with the answer appended: use a model with a standard chat template")
    if len(full) > max_length:
        return None
    return {"input_ids": full, "labels": [IGNORE_INDEX] * len(prompt) + full[len(prompt) :]}


def pretrain_examples(tokenizer, rows: list[dict], max_length: int) -> list[dict]:
    """Packed blocks of at most max_length tokens; {"text"} documents are joined with EOS first (LongLoRA)."""
    blocks, stream = [], []
    for row in rows:
        if "input_ids" in row:
            ids = list(row["input_ids"])
            blocks += [ids[i : i + max_length] for i in range(0, len(ids), max_length)]
        elif "text" in row:
            stream += tokenizer(row["text"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        else:
            raise UserError('a pretrain record needs "input_ids" or "text": fix the data or regenerate it with `longrecall data pretrain`')
    blocks += [stream[i : i + max_length] for i in range(0, len(stream), max_length)]
    return [{"input_ids": b, "labels": list(b)} for b in blocks if len(b) >= 2]


def mix_examples(pretrain: list[dict], sft: list[dict], mix: float, seed: int) -> list[dict]:
    """Both lists combined so that a `mix` share is SFT; the total keeps both sizes' sum. Seeded."""
    if not pretrain or not sft:
        return pretrain or sft
    rng = random.Random(seed)
    total = len(pretrain) + len(sft)
    n_sft = round(mix * total)

    def draw(xs, k):
        order = []
        while len(order) < k:
            order += rng.sample(range(len(xs)), len(xs))
        return [xs[i] for i in order[:k]]

    return draw(sft, n_sft) + draw(pretrain, total - n_sft)


def build_examples(cfg: LongLoraConfig, tokenizer) -> list[dict]:
    pre = pretrain_examples(tokenizer, read_jsonl(cfg.pretrain), cfg.max_length) if cfg.pretrain else []
    sft, dropped = [], 0
    for row in read_jsonl(cfg.sft) if cfg.sft else []:
        if "messages" not in row:
            raise UserError(f'{cfg.sft}: an SFT record needs "messages": regenerate it with `longrecall data sft`')
        ex = chat_example(tokenizer, row["messages"], cfg.max_length)
        dropped += ex is None
        sft += [ex] if ex else []
    if dropped:
        print(f"dropped {dropped} SFT records longer than max_length={cfg.max_length}")
    examples = mix_examples(pre, sft, cfg.mix, cfg.seed)
    if not examples:
        raise UserError(f"no training sample fits in max_length={cfg.max_length}: raise max_length or use shorter data")
    return examples


def s2attn_note(cfg: LongLoraConfig, examples: list[dict]) -> str | None:
    """One line when `s2attn: true` changes nothing: every sample is a chat, and chats train with full attention.

    Chats (prompt masked: labels start with IGNORE_INDEX) run under full_attention() unless s2attn_sft is set;
    only packed next-token blocks train with S²-Attn. An SFT-only run would otherwise claim S²-Attn silently.
    """
    if not cfg.s2attn or cfg.s2attn_sft or any(ex["labels"][0] != IGNORE_INDEX for ex in examples):
        return None
    return ("note: s2attn: true has no effect in this run: every training sample is a chat and chats train with full "
            "attention (s2attn_sft: false); add pretrain: blocks to train with S²-Attn, or set s2attn: false to say so")


def collate_batch1(features: list[dict]) -> dict:
    """Batch 1, no padding: S²-Attn's groups and packed blocks must not see pad tokens."""
    import torch

    if len(features) != 1:
        raise UserError("the LongLoRA recipe trains with batch 1 (packed sequences): raise grad_accum instead")
    f = features[0]
    return {"input_ids": torch.tensor([f["input_ids"]]), "labels": torch.tensor([f["labels"]])}


# ---------------------------------------------------------------- trainer glue

def _trainer_cls():
    import torch
    from transformers import Trainer

    class LongLoraTrainer(Trainer):
        """Trainer with LoRA+ lr groups, a chunked token-weighted loss and a NaN stop."""

        def __init__(self, *args, lora_cfg: LoraPlusConfig, chunk_size: int, s2attn_sft: bool = False, **kwargs):
            super().__init__(*args, **kwargs)
            self.lora_cfg, self.chunk_size, self.s2attn_sft = lora_cfg, chunk_size, s2attn_sft
            self.model_accepts_loss_kwargs = True  # compute_loss already divides by num_items_in_batch

        def _world_loss_scale(self) -> int:
            """What Trainer.compute_loss multiplies a num_items_in_batch-normalised loss by (transformers 5.24).

            With average_tokens_across_devices (the default) num_items_in_batch is the token count summed over all
            processes, while DDP/FSDP average the gradients over processes: without this factor every gradient is
            1/world_size of the single-process one. Tensor-parallel ranks share a batch and are not counted.
            """
            if not self.args.average_tokens_across_devices:
                return 1
            return self.accelerator.num_processes // self.get_tp_size() if self.args.n_gpu <= 1 else self.args.n_gpu

        def create_optimizer(self, model=None):
            if self.optimizer is None:
                self.optimizer = lora_plus_adamw(model or self.model, self.lora_cfg, self.args)
            return self.optimizer

        def training_step(self, model, inputs, *args, **kwargs):
            from .s2attn import full_attention

            is_chat = bool((inputs["labels"][:, 0] == IGNORE_INDEX).all())  # chats mask their prompt; blocks do not
            if is_chat and not self.s2attn_sft:
                with full_attention():  # forward and backward (recomputation included) see the needle
                    return super().training_step(model, inputs, *args, **kwargs)
            return super().training_step(model, inputs, *args, **kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            hidden = _final_hidden(model, inputs["input_ids"])
            head = self.accelerator.unwrap_model(model).get_output_embeddings()
            loss = chunked_lm_loss(hidden, head, labels, self.chunk_size)
            if num_items_in_batch is not None:  # token-weighted over the accumulated sequences
                loss = loss * (labels[:, 1:] != IGNORE_INDEX).sum() / num_items_in_batch
                loss = loss * self._world_loss_scale()
            if not torch.isfinite(loss.detach()):
                raise UserError(f"loss became {loss.item()} at step {self.state.global_step}: lower lr (now {self.args.learning_rate:g}) or lora.embed_lr, then rerun")
            return (loss, None) if return_outputs else loss

    return LongLoraTrainer


def lora_plus_adamw(model, lora_cfg: LoraPlusConfig, args):
    """AdamW over LoRA+'s groups (embedding and norms at their own lr) with the TrainingArguments' betas/eps."""
    import torch

    groups = param_groups(model, lora_cfg, args.learning_rate, args.weight_decay)
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)


def _final_hidden(model, input_ids):
    """Final-norm hidden states from a normal forward of the (possibly DDP/FSDP-wrapped) model.

    The forward runs through the wrapper so distributed hooks fire; logits_to_keep=1 skips the N x vocab logits,
    and a hook on the final norm keeps its output for the chunked loss.
    """
    from accelerate.utils import extract_model_from_parallel

    norm = extract_model_from_parallel(model).get_decoder().norm
    captured = []
    handle = norm.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        model(input_ids=input_ids, logits_to_keep=1, use_cache=False)
    finally:
        handle.remove()
    return captured[-1]


def write_logs(out: Path, history: list[dict], title: str = "LongLoRA training loss") -> None:
    """train_log.jsonl and loss.png from the Trainer's history (restored on resume, so they cover the whole run)."""
    write_jsonl(out / "train_log.jsonl", history)
    plot_loss(history, out / "loss.png", title)


def plot_loss(history: list[dict], path: Path, title: str = "LongLoRA training loss") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    if not points:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*zip(*points), marker="." if len(points) < 50 else None)
    ax.set(xlabel="optimizer step", ylabel="training loss", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def build_model(cfg: LongLoraConfig):
    """Base model + position scaling + LoRA+ (+ S²-Attn), as a peft model."""
    from transformers import set_seed

    from ..models import load_model
    from .positions import apply_position_scaling, check_sequence_length
    from .s2attn import enable_s2attn

    set_seed(cfg.seed)
    model = load_model(cfg.model)
    if cfg.target_length:
        apply_position_scaling(model, cfg.target_length, cfg.scaling_method)
    check_sequence_length(model, cfg.max_length)
    model.config.use_cache = False
    model = apply_lora_plus(model, cfg.lora)
    if cfg.continue_from:
        load_phase_weights(model, cfg.continue_from)
    if cfg.s2attn:
        enable_s2attn(model, group_fraction=cfg.group_fraction, group_size=cfg.group_size)
    return model


def check_continue_from(cfg: LongLoraConfig) -> None:
    """The adapter to continue must be one this config could have written: same LoRA shape and position scaling."""
    from .lora_plus import read_adapter_info

    path = Path(cfg.continue_from)
    info = read_adapter_info(path)  # a missing or damaged folder is a one-line error
    peft_cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    targets = sorted(dict.fromkeys(cfg.lora.targets + (["gate_proj", "up_proj", "down_proj"] if cfg.lora.mlp else [])))
    theirs = peft_cfg.get("target_modules") or []
    mismatch = [name for name, a, b in [("lora.rank", peft_cfg.get("r"), cfg.lora.rank),
                                        ("lora.targets", sorted(theirs) if isinstance(theirs, list) else theirs, targets)] if a != b]
    if info.get("base_model") not in (None, cfg.model):
        mismatch.append("model")
    recorded = info.get("config") or {}
    for key in ("target_length", "scaling_method"):
        if key in recorded and recorded[key] != getattr(cfg, key):
            mismatch.append(key)
    if mismatch:
        raise UserError(f"continue_from {path} was trained with other {', '.join(mismatch)}: use the same settings as its "
                        "config (longrecall_adapter.json) or start without continue_from")


def load_phase_weights(model, adapter_dir) -> None:
    """Copy a saved adapter's tensors (LoRA, embedding, norms) into the freshly built LoRA+ model, all or nothing."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise UserError(f"continue_from {adapter_dir} holds weights this model has no place for ({unexpected[0]}, ...): "
                        "continue an adapter of the same base model and LoRA settings")


def train_longlora(cfg: LongLoraConfig, callbacks: list | None = None) -> dict:
    """Train (resuming from the newest checkpoint in output_dir if any) and write the adapter, log and plot."""
    import torch
    from transformers import TrainerCallback, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    from ..models import load_tokenizer
    from .s2attn import disable_s2attn

    validate(cfg)
    if cfg.continue_from:
        check_continue_from(cfg)
    out = Path(cfg.output_dir)
    tokenizer = load_tokenizer(cfg.model)
    examples = build_examples(cfg, tokenizer)  # before the model: bad data fails in seconds
    out.mkdir(parents=True, exist_ok=True)  # only once the data is good: a missing file leaves no config.yaml behind
    with atomic_open(out / "config.yaml") as fh:
        yaml.safe_dump(to_dict(cfg), fh, sort_keys=False)
    note = s2attn_note(cfg, examples)
    if note:
        print(note)
    bf16 = train_bf16(cfg.bf16)
    model = build_model(cfg)
    if bf16 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        store_frozen_bf16(model)  # the same math under autocast, without a weight cast per call
    print(format_report(trainable_report(model)))

    class _SaveLog(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.is_world_process_zero:
                write_logs(out, state.log_history)

    args = TrainingArguments(
        output_dir=str(out), max_steps=cfg.max_steps, per_device_train_batch_size=1, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr, weight_decay=cfg.weight_decay, lr_scheduler_type="constant_with_warmup", warmup_steps=cfg.warmup_steps,
        max_grad_norm=cfg.max_grad_norm, bf16=bf16, activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False}, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, logging_steps=cfg.logging_steps, seed=cfg.seed, data_seed=cfg.seed,
        report_to="none", remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=False,
        include_num_input_tokens_seen=True, use_cpu=not torch.cuda.is_available(),
    )
    trainer = _trainer_cls()(
        model=model, args=args, train_dataset=examples, data_collator=collate_batch1,
        callbacks=[_SaveLog(), *(callbacks or [])], lora_cfg=cfg.lora, chunk_size=cfg.loss_chunk_size,
        s2attn_sft=cfg.s2attn_sft,
    )
    resume = get_last_checkpoint(str(out))
    if resume:
        print(f"resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    disable_s2attn(model)
    adapter = out / "adapter"
    trainer.save_model(str(adapter))  # the peft folder (LoRA + embedding + norms), gathered under FSDP/DeepSpeed
    if trainer.is_world_process_zero():
        write_adapter_info(model, adapter, {"base_model": cfg.model, "recipe": "longlora", "config": to_dict(cfg), "steps": trainer.state.global_step})
        tokenizer.save_pretrained(adapter)
        write_logs(out, trainer.state.log_history)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"adapter": str(adapter), "steps": trainer.state.global_step, "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None, "log": str(out / "train_log.jsonl"), "plot": str(out / "loss.png")}


def parse_sets(items: list[str]) -> dict:
    """`--set key=value` pairs; dotted keys reach nested sections."""
    return parse_key_values(items, "--set")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every config-driven training command (longlora, dpo)."""
    parser.add_argument("--config", default=None, help="YAML preset (configs/)")
    parser.add_argument("--output-dir", default=None, help="overrides output_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. max_steps=10 or lora.rank=16 (repeatable)")


def config_from_args(cls, args, prog: str):
    """Typed config from a parsed Namespace (the CLI) or an argv list (tests, scripts)."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog=prog)
        add_arguments(parser)
        args = parser.parse_args(args)
    overrides = parse_sets(args.set)
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    return load_config(cls, args.config, overrides)


def main(args=None) -> int:
    """`longrecall train longlora --config FILE [--output-dir DIR] [--set key=value ...]`."""
    summary = train_longlora(config_from_args(LongLoraConfig, args, "longrecall train longlora"))
    print(f"{summary['steps']} steps, loss {summary['first_loss']} -> {summary['final_loss']}; adapter in {summary['adapter']}")
    return 0
