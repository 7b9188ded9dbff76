"""The folder `longrecall lift ingest` writes, as ask and evaluate read it: file names, manifest, cached loading.

Shared by ingest (writes the folder, then drops the cached model of a re-ingested folder) and ask/evaluate (read it),
so neither imports the other.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from ..errors import UserError

MANIFEST = "lift_manifest.json"
CONTEXT = "context.json"


def read_manifest(adapter_dir: str | Path) -> dict:
    path = Path(adapter_dir) / MANIFEST
    if not path.exists():
        raise UserError(f"{path} not found: pass a folder written by `longrecall lift ingest`")
    return json.loads(path.read_text())


@functools.lru_cache(maxsize=2)
def load(adapter_dir: str, model_name: str | None = None):
    """(model, tokenizer, manifest) for an ingested adapter; cached so several questions load it once."""
    from ..models import load_model, load_tokenizer

    manifest = read_manifest(adapter_dir)
    name = model_name or manifest["base_model"]
    tokenizer, model = load_tokenizer(name), load_model(name)
    if manifest["adapter"] == "gated":
        from .gated_memory import load_gated_memory

        model = load_gated_memory(model, adapter_dir)
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    model.eval()
    return model, tokenizer, manifest
