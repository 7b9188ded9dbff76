"""LongLoRA's LoRA+: LoRA on attention plus a trainable token embedding and norms, saved, loaded and merged as one adapter.

    longrecall train merge --adapter runs/longlora/adapter --output-dir runs/longlora/merged

The embedding and every norm layer go into peft's `modules_to_save`, so their trained copies live in the adapter file
(LongLoRA's users lost them when they sat in a separate file). With tied embeddings (SmolLM2) peft's
`ensure_weight_tying` wraps lm_head with the same trained copy, so training, saving and merging keep them tied.
The position scaling the adapter was trained with is written next to it and re-applied on load and merge.
"""
from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..errors import UserError
from ..io import write_json

ATTN_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP_TARGETS = ["gate_proj", "up_proj", "down_proj"]
INFO_FILE = "longrecall_adapter.json"
GROUPS = ("lora", "embeddings", "norms", "other")


@dataclass
class LoraPlusConfig:
    rank: int = 8
    """LoRA rank r (LongLoRA: 8; their ablation saw little change from 8 to 256)."""
    alpha: int = 16
    """LoRA alpha; the update is scaled by alpha / rank."""
    dropout: float = 0.0
    """Dropout on the LoRA input (LongLoRA: 0)."""
    targets: list[str] = field(default_factory=lambda: list(ATTN_TARGETS))
    """Linear layers that get LoRA (leaf module names)."""
    mlp: bool = False
    """Also put LoRA on the MLP projections (gate/up/down)."""
    train_embeddings: bool = True
    """Train the full token embedding (and lm_head when tied): LongLoRA's biggest single gain."""
    train_norms: bool = True
    """Train every normalization layer's weights."""
    embed_lr: float | None = None
    """Learning rate for the embedding group (None: the main lr)."""
    norm_lr: float | None = None
    """Learning rate for the norm group (None: the main lr)."""


def _is_norm(module) -> bool:
    return "norm" in type(module).__name__.lower() and getattr(module, "weight", None) is not None


def norm_module_names(model) -> list[str]:
    """Full names of every normalization layer (RMSNorm/LayerNorm, incl. q/k norms where a model has them)."""
    return [name for name, mod in model.named_modules() if name and _is_norm(mod)]


def embedding_module_name(model) -> str:
    emb = model.get_input_embeddings()
    for name, mod in model.named_modules():
        if mod is emb:
            return name
    raise UserError(f"{type(model).__name__} has no input embedding module: set train_embeddings: false")


def _tied(model) -> bool:
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and out.weight is inp.weight


def peft_config_for(model, cfg: LoraPlusConfig | None = None):
    """The peft LoraConfig of LoRA+ for this model (also what TRL trainers take as `peft_config`)."""
    from peft import LoraConfig

    cfg = cfg or LoraPlusConfig()
    if cfg.rank < 1:
        raise UserError(f"LoRA rank must be >= 1, got {cfg.rank}: use 8 (LongLoRA's value)")
    targets = list(dict.fromkeys(cfg.targets + (MLP_TARGETS if cfg.mlp else [])))
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise UserError(f"LoRA targets {missing} not found in {type(model).__name__}: list existing linear layers in targets")
    to_save = ([embedding_module_name(model)] if cfg.train_embeddings else []) + (norm_module_names(model) if cfg.train_norms else [])
    return LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        modules_to_save=to_save or None,
        # Tied lm_head gets the same trained copy as the embedding, so logits and the merged model stay consistent.
        ensure_weight_tying=cfg.train_embeddings and _tied(model),
        task_type="CAUSAL_LM",
    )


def apply_lora_plus(model, cfg: LoraPlusConfig | None = None):
    """Wrap `model` in a peft LoRA model whose embedding and norms are trainable too; returns the PeftModel."""
    from peft import get_peft_model

    peft_cfg = peft_config_for(model, cfg)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, peft_cfg)


def store_frozen_bf16(model) -> int:
    """Keep the frozen linear weights in bf16; returns how many. Under bf16 autocast each linear casts its fp32
    weight to bf16 at every call (frozen weights are not in autocast's cast cache), so the math is unchanged while
    those casts and half those weights' memory go: steps 1.03-1.15x faster side by side (benchmarks/bench_train.py).
    For bf16-autocast training in one process: FSDP and DeepSpeed want one dtype per flat parameter."""
    import torch

    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}  # a tied head stays
    n = 0
    for module in model.modules():
        w = getattr(module, "weight", None)
        if (isinstance(module, torch.nn.Linear) and w is not None and not w.requires_grad and w.dtype == torch.float32
                and id(w) not in embeddings):
            module.weight.data = w.data.to(torch.bfloat16)
            n += 1
    return n


def _group_of(model, name: str) -> str:
    if "lora_" in name:
        return "lora"
    # Classify by the module that holds the parameter: inside peft's wrappers that is the trained copy itself.
    module = model.get_submodule(name.rsplit(".", 1)[0])
    if isinstance(module, nn.Embedding):
        return "embeddings"
    return "norms" if _is_norm(module) else "other"


def _named_groups(model) -> dict[str, list[tuple[str, object]]]:
    """Trainable parameters by group (tied parameters counted once)."""
    groups: dict[str, list] = {g: [] for g in GROUPS}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[_group_of(model, name)].append((name, p))
    return groups


def trainable_report(model) -> dict:
    """{group: {"params": n, "tensors": k, "names": [...]}} for lora/embeddings/norms/other, plus totals."""
    report = {g: {"params": sum(p.numel() for _, p in ps), "tensors": len(ps), "names": [n for n, _ in ps]} for g, ps in _named_groups(model).items()}
    total = sum(p.numel() for p in model.parameters())
    report["trainable"] = sum(report[g]["params"] for g in GROUPS)
    report["total"] = total
    return report


def format_report(report: dict) -> str:
    lines = [f"{g:<11} {report[g]['params']:>12,} params in {report[g]['tensors']:>4} tensors" for g in GROUPS]
    share = 100 * report["trainable"] / max(report["total"], 1)
    lines.append(f"{'trainable':<11} {report['trainable']:>12,} of {report['total']:,} ({share:.2f}%)")
    return "\n".join(lines)


def param_groups(model, cfg: LoraPlusConfig, lr: float, weight_decay: float = 0.0) -> list[dict]:
    """Optimizer groups: LoRA and others at lr, embeddings at embed_lr, norms at norm_lr (empty groups dropped)."""
    rates = {"lora": lr, "other": lr, "embeddings": lr if cfg.embed_lr is None else cfg.embed_lr, "norms": lr if cfg.norm_lr is None else cfg.norm_lr}
    return [
        {"params": [p for _, p in ps], "lr": rates[g], "weight_decay": weight_decay, "name": g}
        for g, ps in _named_groups(model).items()
        if ps
    ]


def position_info(config) -> dict:
    """What evaluation must reproduce: the RoPE parameters and context length the adapter was trained with."""
    from .positions import native_length, scaling_factor

    return {
        "rope_parameters": dict(getattr(config, "rope_parameters", None) or {}),
        "max_position_embeddings": int(config.max_position_embeddings),
        "native_length": native_length(config),
        "factor": scaling_factor(config),
    }


# The prompt format the data commands write (no answer prefix); an adapter records the one it was trained with.
DEFAULT_ANSWER_PREFIX = False
_CHAIN_KEYS = ("init_adapter", "answer_prefix")


def write_adapter_info(model, out_dir, extra_config: dict | None = None) -> None:
    """longrecall_adapter.json next to the peft files: base model, position scaling, prompt format (answer_prefix),
    plus extra_config.

    An adapter that continues another (load_adapter(..., trainable=True), e.g. GRPO after SFT) keeps that adapter's
    init_adapter and prompt format unless extra_config says otherwise: evaluation, resume and merge rebuild the whole
    chain from this file, and a dropped init_adapter would put the adapter on the bare base."""
    info = {"base_model": model.peft_config[model.active_adapter].base_model_name_or_path, "positions": position_info(model.get_base_model().config),
            "answer_prefix": DEFAULT_ANSWER_PREFIX}
    inherited = getattr(model, "longrecall_chain", None) or {}
    write_json(Path(out_dir) / INFO_FILE, {**info, **inherited, **(extra_config or {})})


def save_adapter(model, out_dir, extra_config: dict | None = None, tokenizer=None) -> Path:
    """Standard peft adapter folder (LoRA + embedding + norms) plus longrecall_adapter.json with position scaling."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    write_adapter_info(model, out, extra_config)
    return out


def _json_object(path: Path, adapter_dir) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({str(e).splitlines()[0][:80]}): the adapter {adapter_dir} is damaged; "
                        "re-save it or pass another --adapter") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object: the adapter {adapter_dir} is damaged; pass another --adapter")
    return data


def read_adapter_info(adapter_dir) -> dict:
    """longrecall_adapter.json of an adapter folder (checked, with adapter_config.json, before any model loads)."""
    path = Path(adapter_dir) / INFO_FILE
    if not Path(adapter_dir).is_dir():
        raise UserError(f"adapter folder {adapter_dir} does not exist: pass the 'adapter' folder a training run wrote")
    if not (Path(adapter_dir) / "adapter_config.json").exists():
        raise UserError(f"{adapter_dir} is not an adapter folder (no adapter_config.json): pass the 'adapter' folder a training run wrote")
    _json_object(Path(adapter_dir) / "adapter_config.json", adapter_dir)
    return _json_object(path, adapter_dir) if path.exists() else {}


def recorded_answer_prefix(adapter_dir) -> bool | None:
    """The answer_prefix an adapter was trained with (its prompt format), None when it records none."""
    value = read_adapter_info(adapter_dir).get("answer_prefix")
    return None if value is None else bool(value)


def _restore_positions(model, info: dict) -> None:
    """The adapter's recorded RoPE scaling onto the base model (refused in one line when they cannot match)."""
    from .positions import restore_position_scaling

    restore_position_scaling(model, info.get("positions") or {})


def load_adapter(base_model_name_or_model, adapter_dir, trainable: bool = False):
    """Base model (name, folder or model; None: the one recorded in the adapter) + position scaling + adapter."""
    from peft import PeftModel

    from ..models import load_model

    info = read_adapter_info(adapter_dir)
    base = base_model_name_or_model
    if base is None or isinstance(base, (str, Path)):
        if base is None:  # the recorded base: an unknown name or a folder from another machine fails fast, in one line
            from ..models import resolve

            resolve(info.get("base_model", "default"), what=f"the base model recorded in adapter {adapter_dir}")
        base = load_model(str(base) if base is not None else info.get("base_model", "default"))
    if info.get("init_adapter"):  # trained on top of another adapter (DPO after SFT): rebuild that model first
        base = load_adapter(base, info["init_adapter"]).merge_and_unload()
    _restore_positions(base, info)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(tie_word_embeddings|is_gradient_checkpointing).*")
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=trainable)
    model.longrecall_chain = {k: info[k] for k in _CHAIN_KEYS if info.get(k) is not None}  # write_adapter_info carries it on
    return model if trainable else model.eval()


def merge_adapter(base, adapter_dir, out_dir) -> Path:
    """Fold LoRA, embedding and norms into the base weights and save a full model folder (with its RoPE scaling)."""
    model = load_adapter(base, adapter_dir)
    merged = model.merge_and_unload()
    if getattr(merged.config, "tie_word_embeddings", False):
        merged.tie_weights()
    out = Path(out_dir)
    merged.save_pretrained(out)
    info = read_adapter_info(adapter_dir)
    has_tok = (Path(adapter_dir) / "tokenizer_config.json").exists()
    tok_source = str(adapter_dir) if has_tok else str(base) if isinstance(base, (str, Path)) else info.get("base_model", "default")
    try:
        from ..models import load_tokenizer

        load_tokenizer(tok_source).save_pretrained(out)
    except UserError:
        print(f"note: no tokenizer next to the adapter or the base model; {out} holds the weights only")
    write_json(out / INFO_FILE, {**info, "merged_from": str(adapter_dir)})
    return out


def add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", required=True, help="adapter folder written by a training run (e.g. runs/longlora/adapter)")
    parser.add_argument("--output-dir", required=True, help="where the merged model folder goes")
    parser.add_argument("--model", default=None, help="base model (default: the one recorded in the adapter)")


def merge_main(args=None) -> int:
    """`longrecall train merge --adapter DIR --output-dir DIR [--model NAME]` (args: a parsed Namespace or an argv list)."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="longrecall train merge")
        add_merge_arguments(parser)
        args = parser.parse_args(args)
    out = merge_adapter(args.model, args.adapter, args.output_dir)
    print(f"merged model written to {out}")
    return 0
