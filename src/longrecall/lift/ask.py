"""`longrecall lift ask`: answer a question from an ingested adapter, with no context or a truncated one.

    longrecall lift ask --adapter runs/lift-book --context none "What is the pass key for Anna?"
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch

from ..data.lift import qa_messages, read_input, sha256_text
from ..errors import UserError
from .folder import CONTEXT, MANIFEST, load, load_vocabulary, read_manifest, routable, set_route  # noqa: F401 (MANIFEST, read_manifest: this module's API)
from .route import route as route_question

ROUTES = ("auto", "always", "entity")  # auto: entity for a gated adapter with its vocabulary, else always


def check_input(manifest: dict, input_path: str | Path) -> bool:
    """Warn (and return False) when the adapter was ingested from another input than `input_path`."""
    text, _ = read_input(input_path)
    if sha256_text(text) == manifest["input_sha256"]:
        return True
    warnings.warn(f"adapter was ingested from {manifest['input']} (sha256 {manifest['input_sha256'][:12]}), "
                  f"not from {input_path}: its answers are about the other input", stacklevel=2)
    return False


def prompt_messages(adapter_dir: str | Path, question: str, context_mode: str = "none") -> list[dict]:
    """The chat for a question: bare (context none) or after the stored head and tail of the input (truncated)."""
    if context_mode == "none":
        return qa_messages(question)
    if context_mode == "truncated":
        path = Path(adapter_dir) / CONTEXT
        if not path.exists():
            raise UserError(f"{path} missing: re-run `longrecall lift ingest`, or use --context none")
        ctx = json.loads(path.read_text())
        return qa_messages(question, ctx["head"], ctx["tail"])
    raise UserError(f"context mode {context_mode!r} unknown: pass --context none or --context truncated")


@torch.no_grad()
def ask(adapter_dir: str | Path, question: str, context_mode: str = "none", max_new_tokens: int | None = None,
        input_path: str | Path | None = None, model_name: str | None = None, route: str = "auto") -> str:
    """Greedy answer to `question` from the base model + the ingested adapter; route "entity": the adapter only
    when the question names something the input names (lift/route.py), else the base model exactly."""
    if route not in ROUTES:
        raise UserError(f"--route {route!r} unknown: pass --route auto, always or entity")
    info = read_manifest(adapter_dir)
    gated = info["adapter"] == "gated"
    if route == "auto":
        from .route import VOCABULARY

        route = "entity" if gated and ((Path(adapter_dir) / VOCABULARY).exists() or input_path is not None) else "always"
    opened = True
    if route == "entity":  # checked before a model loads: a folder without a vocabulary fails in a second
        routable(info)
        opened = route_question(question, load_vocabulary(adapter_dir, input_path))[0]
    model, tokenizer, manifest = load(str(adapter_dir), model_name)
    if input_path is not None:
        check_input(manifest, input_path)
    if gated:
        set_route(model, opened)  # the model is cached: every question sets its own gate
    ids = tokenizer.apply_chat_template(prompt_messages(adapter_dir, question, context_mode), add_generation_prompt=True,
                                        tokenize=True, return_dict=False)
    n = max_new_tokens or manifest["settings"].get("max_new_tokens", 48)
    out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=n,
                         do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()


def add_arguments(parser) -> None:
    parser.add_argument("--adapter", required=True, help="folder written by `longrecall lift ingest`")
    parser.add_argument("--context", choices=["none", "truncated"], default="none", help="add the input's head and tail to the prompt")
    parser.add_argument("--input", default=None, help="the input you mean to ask about: warns if the adapter was built from another")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--route", choices=ROUTES, default="auto",
                        help="entity: open the adapter only when the question names something the input names (else the base model "
                             "answers); always: every question; auto (default): entity for a gated adapter, always for a LoRA one")
    parser.add_argument("question", help="the question")


def main(args) -> int:
    answer = ask(args.adapter, args.question, args.context, args.max_new_tokens, args.input, route=args.route)
    sys.stdout.write(answer + "\n")
    return 0
