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


def load_vocabulary(adapter_dir: str | Path, input_path: str | Path | None = None) -> set[str]:
    """The ingested input's word set for the entity router: vocabulary.json, else computed from `input_path`."""
    from .route import VOCABULARY, vocabulary

    path = Path(adapter_dir) / VOCABULARY
    if path.exists():
        return set(json.loads(path.read_text()))
    if input_path is None:
        raise UserError(f"{path} missing (ingested before the router existed): pass --input with the ingested file, "
                        f"re-run `longrecall lift ingest`, or use --route always")
    from ..data.lift import read_input

    return vocabulary(read_input(input_path)[0])


def routable(manifest: dict) -> None:
    """The entity route needs a gate it can shut: a gated adapter (a LoRA ingest is merged into the weights)."""
    if manifest["adapter"] != "gated":
        raise UserError("--route entity needs a gated adapter (its gate can be shut); a LoRA ingest is merged: use --route always")


def set_route(model, open_: bool) -> None:
    """Open or shut a gated adapter for the next question (shut: the base model exactly)."""
    from .gated_memory import set_gate_scale

    set_gate_scale(model, 1.0 if open_ else 0.0)
