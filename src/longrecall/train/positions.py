"""RoPE position scaling for long-context training and evaluation: linear interpolation (LongLoRA, PI) or YaRN.

    OMP_NUM_THREADS=1 PYTHONPATH=src python -m pytest tests/train/test_positions.py -q

The scaling lives in the config (transformers 5's `rope_parameters` and `max_position_embeddings`), so a saved
model reloads with it and evaluation sees the same positions as training.
"""
from __future__ import annotations

import math

from ..errors import UserError

METHODS = ("linear", "yarn")
YARN_KEEP = ("beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim", "truncate")
"""YaRN settings besides factor and original length, kept when a scaling is extended or restored."""


def _split(model_or_config):
    config = getattr(model_or_config, "config", model_or_config)
    model = model_or_config if config is not model_or_config else None
    return model, config


def native_length(config) -> int:
    """The pretraining context length, before any scaling this module applied."""
    params = getattr(config, "rope_parameters", None) or {}
    kind = params.get("rope_type", "default")
    if kind == "linear":
        return int(config.max_position_embeddings // params["factor"])
    if kind == "yarn":
        return int(params["original_max_position_embeddings"])
    return int(config.max_position_embeddings)


def scaling_factor(config) -> int:
    """The position scaling factor a config carries (1 when unscaled)."""
    params = getattr(config, "rope_parameters", None) or {}
    return int(params.get("factor") or 1) if params.get("rope_type") in METHODS else 1


def apply_position_scaling(model_or_config, target_length: int, method: str = "linear"):
    """Scale RoPE by ceil(target_length / native length) (never below the current factor); return the argument.

    On a model the rotary embeddings are rebuilt in place; a config is edited in place.
    """
    if method not in METHODS:
        raise UserError(f"unknown position scaling '{method}': use one of {', '.join(METHODS)}")
    model, config = _split(model_or_config)
    params = getattr(config, "rope_parameters", None)
    nested = config.nested_rope_parameter_keys(params) if params and hasattr(config, "nested_rope_parameter_keys") else []
    if not params or "rope_theta" not in params or nested:
        raise UserError(f"{type(config).__name__} has no single RoPE to scale: train without position scaling")
    kind = params.get("rope_type", "default")
    if kind not in ("default", *METHODS):
        raise UserError(f"the model already uses '{kind}' RoPE scaling: train at its native length or pick another model")
    native, current = native_length(config), scaling_factor(config)
    factor = max(1, math.ceil(target_length / native))
    # Never scale down: a model trained with a factor must be evaluated with that factor, even on shorter inputs.
    if factor <= current or factor == 1:
        return model_or_config
    if kind != "default" and kind != method:
        raise UserError(f"the model is already scaled with '{kind}' RoPE: use method '{kind}' to extend it further")
    if method == "linear":
        new = {"rope_type": "linear", "factor": float(factor)}
    else:
        new = {"rope_type": "yarn", "factor": float(factor), "original_max_position_embeddings": native}
    new["rope_theta"] = params["rope_theta"]
    if "partial_rotary_factor" in params:
        new["partial_rotary_factor"] = params["partial_rotary_factor"]
    if kind == "yarn":  # extending a YaRN model: its own ramp and attention scaling stay
        new.update({k: params[k] for k in YARN_KEEP if params.get(k) is not None})
    config.rope_parameters = new
    config.max_position_embeddings = native * factor
    config.validate_rope()
    if model is not None:
        _rebuild_rotary(model, config)
    return model_or_config


def _rebuild_rotary(model, config) -> None:
    """Rotary modules compute inv_freq at init, so a changed config needs fresh ones."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__.endswith("RotaryEmbedding"):
                device = child.inv_freq.device
                setattr(parent, name, type(child)(config=config).to(device))


def _normalised(params: dict | None) -> dict:
    """RoPE parameters comparable across a JSON round trip (3 == 3.0) and defaults (None-valued keys dropped)."""
    out = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        out[key] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    out.setdefault("rope_type", "default")
    return out


def _describe(params: dict) -> str:
    kind = params.get("rope_type", "default")
    if kind == "default":
        return "unscaled RoPE"
    extra = ", ".join(f"{k}={params[k]:g}" if isinstance(params[k], float) else f"{k}={params[k]}"
                      for k in sorted(params) if k not in ("rope_type", "rope_theta"))
    return f"{kind} RoPE ({extra})"


def restore_position_scaling(model_or_config, recorded: dict) -> None:
    """Give a base model the exact RoPE scaling an adapter was trained with, or refuse in one line.

    `recorded` is what training wrote (lora_plus.position_info): rope_parameters, max_position_embeddings,
    native_length, factor. An unscaled base gets the recorded parameters verbatim (YaRN's beta_fast, beta_slow,
    attention_factor, ... included); a base that is already scaled must carry exactly the recorded ones.
    Refused: an adapter trained without scaling on a scaled base; scaling parameters that differ; another base.
    """
    if not recorded:
        return  # an adapter from before positions were recorded
    model, config = _split(model_or_config)
    want = _normalised(recorded.get("rope_parameters"))
    have = _normalised(getattr(config, "rope_parameters", None))
    other_base = (
        f"base model context {config.max_position_embeddings} ({_describe(have)}) does not match the adapter's "
        f"{recorded.get('max_position_embeddings')} ({_describe(want)}): load the adapter onto the base model it was trained from"
    )
    if want == have:
        if int(config.max_position_embeddings) != int(recorded.get("max_position_embeddings", config.max_position_embeddings)):
            raise UserError(other_base)
        return
    adapter_scaled = want["rope_type"] in METHODS and recorded.get("factor", 1) > 1
    base_scaled = have["rope_type"] in METHODS and scaling_factor(config) > 1
    if not adapter_scaled and base_scaled:
        raise UserError(
            f"the adapter was trained without position scaling but the base model has {_describe(have)}: load it onto "
            f"the unscaled base model it was trained from (not a merged or re-scaled copy)"
        )
    if adapter_scaled and base_scaled:
        raise UserError(
            f"position scaling differs: the adapter was trained with {_describe(want)}, the base model has "
            f"{_describe(have)}: load it onto the unscaled base model (the adapter's scaling is then restored) or set "
            f"the same scaling (target_length / scaling_method) as its training run"
        )
    unscaled_want = {k: v for k, v in want.items() if k in ("rope_theta", "partial_rotary_factor")}
    unscaled_have = {k: v for k, v in have.items() if k in ("rope_theta", "partial_rotary_factor")}
    if not adapter_scaled or unscaled_want != unscaled_have or native_length(config) != int(recorded.get("native_length", -1)):
        raise UserError(other_base)
    config.rope_parameters = dict(recorded["rope_parameters"])
    config.max_position_embeddings = int(recorded["max_position_embeddings"])
    config.validate_rope()
    if model is not None:
        _rebuild_rotary(model, config)


def check_sequence_length(model_or_config, length: int) -> None:
    """Refuse a sequence longer than the (scaled) context: past it, positions were never trained or interpolated."""
    _, config = _split(model_or_config)
    limit = int(config.max_position_embeddings)
    if length > limit:
        raise UserError(
            f"sequence of {length} tokens exceeds the model's {limit}-token context: raise the target length "
            f"(position scaling target_length >= {length}) or shorten the input"
        )
