"""What both GRPO trainers share: the policy (base + position scaling + LoRA+ or an adapter to continue), saving it,
and the training log. grpo.py (TRL) and atropos_consumer.py (Atropos' API) both import from here and never from
each other's internals, so rl/ has no import circle.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_open, write_jsonl

try:  # the LongLoRA adapter setup; plain peft LoRA (attention only) when train/ is absent
    from ..train.lora_plus import LoraPlusConfig, load_adapter, param_groups, peft_config_for, save_adapter
    HAVE_LORA_PLUS = True
except ImportError:  # pragma: no cover - train/ ships with the package
    HAVE_LORA_PLUS = False

    @dataclass
    class LoraPlusConfig:  # same keys as train.lora_plus, so presets load either way
        rank: int = 8
        alpha: int = 16
        dropout: float = 0.0
        targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
        mlp: bool = False
        train_embeddings: bool = True
        train_norms: bool = True
        embed_lr: float | None = None
        norm_lr: float | None = None

__all__ = ["HAVE_LORA_PLUS", "LoraPlusConfig", "adapter_answer_prefix", "adapter_record", "build_policy", "param_groups",
           "save_policy", "write_logs"]


def build_policy(cfg):
    """(peft model, tokenizer): base + position scaling + LoRA+ or the SFT adapter to continue.

    Always full attention: RL trains on chats, and S²-Attn hides the needle from the answer (the recipe trains chats
    with full attention for that reason, docs/benchmarks.md), so the loss forward sees what sampling saw."""
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    from ..models import load_model, load_tokenizer

    set_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model)
    base = load_model(cfg.model)
    if cfg.target_length:
        from ..train.positions import apply_position_scaling
        apply_position_scaling(base, cfg.target_length, cfg.scaling_method)
    base.config.use_cache = True
    if cfg.adapter:  # continue the SFT adapter (its own position scaling is restored by load_adapter)
        model = load_adapter(base, cfg.adapter, trainable=True)
    elif HAVE_LORA_PLUS:
        model = get_peft_model(base, peft_config_for(base, cfg.lora))
    else:
        print("note: longrecall.train.lora_plus missing: plain peft LoRA on attention, embeddings and norms frozen")
        model = get_peft_model(base, LoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha, target_modules=cfg.lora.targets, task_type="CAUSAL_LM"))
    return model, tokenizer


def adapter_answer_prefix(adapter) -> bool | None:
    """The prompt format (answer_prefix) an adapter folder records, None when it records none."""
    if not HAVE_LORA_PLUS:  # pragma: no cover
        return None
    from ..train.lora_plus import recorded_answer_prefix

    return recorded_answer_prefix(adapter)


def adapter_record(cfg) -> dict:
    """What the trained adapter records beyond its weights: the prompt format it was trained with, and the adapter
    it continued (its own init_adapter chain is carried by write_adapter_info)."""
    record = {"answer_prefix": bool(cfg.answer_prefix)}
    if cfg.adapter:
        record["continued_from"] = str(Path(cfg.adapter).resolve())
    return record


def save_policy(model, tokenizer, out: Path, extra: dict) -> Path:
    """The adapter folder, like the LongLoRA recipe's (position scaling recorded next to it)."""
    if HAVE_LORA_PLUS:
        return save_adapter(model, out / "adapter", extra, tokenizer=tokenizer)
    model.save_pretrained(out / "adapter")
    tokenizer.save_pretrained(out / "adapter")
    return out / "adapter"


def write_logs(history: list[dict], out: Path, title: str) -> None:
    """train_log.jsonl and reward.png (mean group reward per optimizer step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_jsonl(out / "train_log.jsonl", history)
    points = [(h["step"], h["reward"]) for h in history if "reward" in h and "step" in h and h.get("trained", True)]
    if not points:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps, rewards = zip(*points)
    ax.plot(steps, rewards, marker=".", lw=0.8, alpha=0.5, label="per step")
    window = max(1, min(10, len(points) // 4))
    if window > 1:  # a step's reward is the mean of a few groups: the trend needs a running mean
        smooth = [sum(rewards[max(0, i - window + 1): i + 1]) / len(rewards[max(0, i - window + 1): i + 1]) for i in range(len(rewards))]
        ax.plot(steps, smooth, lw=2, label=f"running mean of {window}")
        ax.legend(loc="upper left", fontsize=8)
    ax.set(xlabel="optimizer step", ylabel="mean reward (niah.score)", title=title, ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_open(out / "reward.png", "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
