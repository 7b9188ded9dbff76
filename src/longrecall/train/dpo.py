"""DPO on preference pairs with LongLoRA's adapter setup (LoRA + embedding + norms), on TRL's DPOTrainer.

    longrecall train dpo --config configs/dpo-cpu-smoke.yaml [--output-dir DIR] [--set key=value ...]

Data: JSONL of {"prompt": messages list or string, "chosen": str or messages, "rejected": str or messages}
(`longrecall data dpo` writes it). TRL builds the reference from the same model with the adapter switched off, so
an `init_adapter` (say, the LongLoRA SFT adapter) is merged into the base first and that merged model is the
reference. S²-Attn is off here: DPO batches pad chosen and rejected to one length, and S²-Attn refuses padding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import to_dict
from ..errors import UserError
from ..io import atomic_open, read_jsonl
from ..models import train_bf16
from .lora_plus import LoraPlusConfig, format_report, peft_config_for, trainable_report, write_adapter_info
from .positions import METHODS
from .recipe import add_arguments, config_from_args, lora_plus_adamw, write_logs

__all__ = ["DpoConfig", "add_arguments", "main", "preference_record", "train_dpo"]


@dataclass
class DpoConfig:
    model: str = "default"
    """Base model: 'default' (embedded SmolLM2-135M-Instruct), a local folder or a hub id."""
    init_adapter: str | None = None
    """Adapter merged into the base before DPO (e.g. runs/longlora-cpu/adapter); it becomes the reference model."""
    data: str = "runs/data/dpo.jsonl"
    """JSONL of {prompt, chosen, rejected} records."""
    max_length: int = 2048
    """Prompt + answer tokens; longer pairs are dropped (truncating would cut the answer or the needle)."""
    target_length: int | None = None
    """RoPE position scaling target (None: keep the base's, or the init_adapter's)."""
    scaling_method: str = "linear"
    """'linear' or 'yarn'."""
    beta: float = 0.1
    """DPO temperature: how far the policy may move from the reference."""
    lora: LoraPlusConfig = field(default_factory=LoraPlusConfig)
    """LoRA+ settings, as in the LongLoRA recipe."""
    lr: float = 5e-5
    """Learning rate (constant after warmup)."""
    warmup_steps: int = 0
    """Linear warmup steps."""
    max_steps: int = 50
    """Optimizer steps."""
    batch_size: int = 1
    """Preference pairs per device step (each pair is two sequences)."""
    grad_accum: int = 1
    """Steps accumulated per optimizer step."""
    bf16: bool = True
    """bf16 autocast (CPU too)."""
    gradient_checkpointing: bool = True
    """Recompute activations in backward."""
    save_steps: int = 50
    """Checkpoint every this many steps (resume is automatic)."""
    save_total_limit: int = 1
    """Checkpoints kept on disk."""
    seed: int = 0
    """Seed for LoRA init and data order."""
    output_dir: str = "runs/dpo"
    """Where checkpoints, adapter/, train_log.jsonl and loss.png go."""


def validate(cfg: DpoConfig) -> DpoConfig:
    checks = [
        (cfg.beta > 0, f"beta must be > 0, got {cfg.beta}: use 0.1"),
        (cfg.lr > 0 and math.isfinite(cfg.lr), f"lr must be a positive number, got {cfg.lr}: use 5e-5"),
        (cfg.max_steps >= 1 and cfg.batch_size >= 1 and cfg.grad_accum >= 1 and cfg.save_steps >= 1, "max_steps, batch_size, grad_accum and save_steps must be >= 1"),
        (cfg.max_length >= 16, f"max_length {cfg.max_length} is too short: use >= 16 tokens"),
        (cfg.scaling_method in METHODS, f"scaling_method must be one of {', '.join(METHODS)}, got '{cfg.scaling_method}'"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    return cfg


def _turns(value, role: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        return value
    raise UserError(f"a DPO field must be a string or a list of {{role, content}} messages, got {type(value).__name__}: fix the data")


def preference_record(row: dict) -> dict:
    """TRL's conversational preference format: prompt messages, chosen/rejected assistant turns."""
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
    if missing:
        raise UserError(f"a DPO record lacks {missing}: regenerate it with `longrecall data dpo`")
    return {"prompt": _turns(row["prompt"], "user"), "chosen": _turns(row["chosen"], "assistant"), "rejected": _turns(row["rejected"], "assistant")}


def _fits(tokenizer, rec: dict, max_length: int) -> bool:
    return all(
        len(tokenizer.apply_chat_template(rec["prompt"] + rec[side], tokenize=True, return_dict=True)["input_ids"]) <= max_length
        for side in ("chosen", "rejected")
    )


def build_dataset(cfg: DpoConfig, tokenizer):
    from datasets import Dataset

    records = [preference_record(r) for r in read_jsonl(cfg.data)]
    kept = [r for r in records if _fits(tokenizer, r, cfg.max_length)]
    if len(kept) < len(records):
        print(f"dropped {len(records) - len(kept)} DPO pairs longer than max_length={cfg.max_length}")
    if not kept:
        raise UserError(f"no DPO pair fits in max_length={cfg.max_length}: raise max_length or use shorter data")
    return Dataset.from_list(kept)


def _base_model(cfg: DpoConfig):
    from ..models import load_model
    from .lora_plus import load_adapter
    from .positions import apply_position_scaling

    if cfg.init_adapter:
        model = load_adapter(cfg.model, cfg.init_adapter).merge_and_unload()
    else:
        model = load_model(cfg.model)
    if cfg.target_length:
        apply_position_scaling(model, cfg.target_length, cfg.scaling_method)
    model.config.use_cache = False
    return model


def train_dpo(cfg: DpoConfig) -> dict:
    """DPO with a fresh LoRA+ adapter; writes adapter/, train_log.jsonl and loss.png to output_dir."""
    import torch
    from transformers import TrainerCallback, set_seed
    from transformers.trainer_utils import get_last_checkpoint
    from trl import DPOConfig, DPOTrainer

    from ..models import load_tokenizer

    validate(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "config.yaml") as fh:
        yaml.safe_dump(to_dict(cfg), fh, sort_keys=False)
    set_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model)
    dataset = build_dataset(cfg, tokenizer)  # before the model: bad data fails in seconds
    model = _base_model(cfg)
    lora_cfg = cfg.lora

    class LoraPlusDPOTrainer(DPOTrainer):
        def create_optimizer(self, model=None):
            if self.optimizer is None:
                self.optimizer = lora_plus_adamw(model or self.model, lora_cfg, self.args)
            return self.optimizer

    args = DPOConfig(
        output_dir=str(out), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type="constant_with_warmup",
        warmup_steps=cfg.warmup_steps, beta=cfg.beta, max_length=cfg.max_length, bf16=train_bf16(cfg.bf16),
        activation_checkpointing=cfg.gradient_checkpointing, activation_checkpointing_kwargs={"use_reentrant": False},
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit, logging_steps=1,
        seed=cfg.seed, report_to="none", use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
    )
    class NanStop(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and not math.isfinite(logs.get("loss", 0.0)):
                raise UserError(f"DPO loss became {logs['loss']} at step {state.global_step}: lower lr (now {cfg.lr:g}) or beta, then rerun")

    trainer = LoraPlusDPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                 peft_config=peft_config_for(model, lora_cfg), callbacks=[NanStop()])
    print(format_report(trainable_report(trainer.model)))
    resume = get_last_checkpoint(str(out))
    trainer.train(resume_from_checkpoint=resume)
    adapter = out / "adapter"
    trainer.save_model(str(adapter))  # gathered under FSDP/DeepSpeed
    if trainer.is_world_process_zero():
        # The init adapter as an absolute path: evaluation, resume and merge rebuild base + init + this from any folder.
        init = str(Path(cfg.init_adapter).resolve()) if cfg.init_adapter else None
        extra = {"base_model": cfg.model, "recipe": "dpo", "config": to_dict(cfg), "steps": trainer.state.global_step, "init_adapter": init}
        write_adapter_info(trainer.model, adapter, extra)
        tokenizer.save_pretrained(adapter)
        write_logs(out, trainer.state.log_history, title="DPO training loss")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"adapter": str(adapter), "steps": trainer.state.global_step, "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None}


def main(args=None) -> int:
    """`longrecall train dpo --config FILE [--output-dir DIR] [--set key=value ...]`."""
    summary = train_dpo(config_from_args(DpoConfig, args, "longrecall train dpo"))
    print(f"{summary['steps']} DPO steps, loss {summary['first_loss']} -> {summary['final_loss']}; adapter in {summary['adapter']}")
    return 0
