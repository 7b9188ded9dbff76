"""`longrecall lift eval`: how much of an ingested input the model recalls, in each context mode, against the base.

    longrecall lift eval --adapter runs/lift --input runs/lift/input.json --output-dir runs/lift/eval

For every target needle of the ingested sample it asks a question in a held-out phrasing (never used to make the
LIFT data) and scores the answer with the environment's metric:
  - adapter, no context (parametric memory only);
  - adapter, truncated context (head and tail of the input), and the base model with the same truncated context,
    split into needles inside and outside the kept head/tail;
  - a control set: questions about another text, given in context, with and without the adapter (must not get worse).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from ..errors import UserError
from ..io import write_json
from ..niah.needles import QUESTIONS_ONE, pool
from ..niah.scoring import found
from .ask import prompt_messages
from .folder import CONTEXT, load


def _generate(model, tok, messages: list[dict], max_new_tokens: int = 32) -> str:
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, len(ids):], skip_special_tokens=True).strip()


def needle_questions(sample: dict, seed: int = 0) -> list[dict]:
    """One held-out-phrasing question per target needle that has a name (key/value needles)."""
    from ..data.lift import _needle_name

    rng = random.Random(seed)
    out = []
    for nd in sample.get("needles", []):
        name = _needle_name(nd)
        if nd.get("role") == "target" and name:
            q = rng.choice(pool(QUESTIONS_ONE, "heldout")).format(name=name, key=nd["key"])
            out.append({"question": q, "answer": nd["value"], "text": nd["text"]})
    if not out:
        raise UserError("the input has no named target needles to ask about: ingest a sample JSON from `longrecall niah generate` (e.g. --task multiquery)")
    return out


def evaluate(adapter_dir: str | Path, input_path: str | Path, out_dir: str | Path, control: int = 4) -> dict:
    from ..models import load_model
    from ..niah import GenSpec, generate_sample

    adapter_dir = Path(adapter_dir)
    sample = json.loads(Path(input_path).read_text())
    if not isinstance(sample, dict) or "needles" not in sample:
        raise UserError(f"{input_path} is not a sample JSON: write one with `longrecall niah generate` and pass one line of it")
    model, tok, manifest = load(str(adapter_dir))
    base = load_model(manifest["base_model"], dtype="float32").eval()
    ctx = json.loads((adapter_dir / CONTEXT).read_text())
    rows = []
    for q in needle_questions(sample):
        kept = q["text"] in ctx["head"] or q["text"] in ctx["tail"]
        row = {**q, "in_kept_context": kept}
        for key, (m, mode) in {"adapter_none": (model, "none"), "adapter_truncated": (model, "truncated"),
                               "base_truncated": (base, "truncated"), "base_none": (base, "none")}.items():
            ans = _generate(m, tok, prompt_messages(adapter_dir, q["question"], mode))
            row[key] = {"answer": ans, "correct": found(q["answer"], ans)}
        rows.append(row)
    ctrl = []
    for i in range(control):
        spec = GenSpec(task="single", length=min(1024, sample.get("length", 1024)), depth=0.5, haystack="prose", seed=10_000 + i, phrasing="heldout")
        s = generate_sample(spec, tok)
        both = {name: found(s.answers[0], _generate(m, tok, s.messages())) for name, m in (("adapter", model), ("base", base))}
        ctrl.append(both)

    def acc(key, sel=lambda r: True):
        pick = [r for r in rows if sel(r)]
        return round(100 * sum(r[key]["correct"] for r in pick) / len(pick), 1) if pick else None

    outside = lambda r: not r["in_kept_context"]  # noqa: E731
    result = {
        "input": str(input_path), "input_tokens": manifest.get("input_tokens"), "adapter": manifest.get("adapter"),
        "needles": len(rows), "outside_kept_context": sum(outside(r) for r in rows),
        "recall_no_context": acc("adapter_none"),
        "recall_truncated": acc("adapter_truncated"),
        "base_truncated": acc("base_truncated"),
        "base_no_context": acc("base_none"),
        "outside_adapter_truncated": acc("adapter_truncated", outside),
        "outside_base_truncated": acc("base_truncated", outside),
        "control_adapter": round(100 * sum(c["adapter"] for c in ctrl) / len(ctrl), 1) if ctrl else None,
        "control_base": round(100 * sum(c["base"] for c in ctrl) / len(ctrl), 1) if ctrl else None,
        "ingest_seconds": manifest.get("seconds"),
    }
    out = Path(out_dir)
    write_json(out / "result.json", result)
    write_json(out / "questions.json", rows)
    return result


def add_arguments(p) -> None:
    p.add_argument("--adapter", required=True, help="folder written by `longrecall lift ingest`")
    p.add_argument("--input", required=True, help="the sample JSON that was ingested")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--control", type=int, default=4, help="control questions about text never ingested")


def main(a) -> None:
    r = evaluate(a.adapter, a.input, a.output_dir, a.control)
    print(json.dumps(r, indent=2))
