"""`longrecall lift eval`: how much of an ingested input the model recalls, in each context mode, against the base.

    longrecall lift eval --adapter runs/lift --input runs/lift/input.json --output-dir runs/lift/eval

For every target needle of the ingested sample it asks a question in a held-out phrasing (never used to make the
LIFT data) and scores the answer with the environment's metric:
  - adapter, no context (parametric memory only);
  - adapter, truncated context (head and tail of the input), and the base model with the same truncated context,
    split into needles inside and outside the kept head/tail;
  - a control set: questions about another text, given in context, with and without the adapter (must not get worse);
  - false recall: questions about keys that were never ingested, no context: how often the adapter answers with a
    value it memorised (it should say it does not know);
  - gate statistics (gated adapters): the mean gate per layer on the memory questions, on the in-context control
    questions and on ordinary chats, in gates.json and gates.png. Every answer is saved.
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
from .folder import CONTEXT, load, load_vocabulary, routable, set_route
from .route import route as route_question


def _ids_of(tok, messages: list[dict]) -> torch.Tensor:
    return torch.tensor([tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)])


def _generate(model, tok, messages: list[dict], max_new_tokens: int = 32) -> str:
    ids = _ids_of(tok, messages)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


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


# Ordinary chat questions with no context: the gate should stay shut on them (and the answers stay the base's).
CHATS = (
    "What is the capital of France?", "How many days are there in a week?", "Write one sentence about the sea.",
    "What colour is the sky on a clear day?", "Give me a synonym for happy.", "What is 12 plus 7?",
    "Name a fruit that is yellow.", "How do you say hello in Spanish?", "What do bees make?",
    "Suggest a name for a pet cat.", "Which planet is closest to the sun?", "What is water made of?",
)


def never_ingested(sample: dict, n: int, seed: int = 0) -> list[dict]:
    """Questions in the same phrasings about keys the input never mentions (answering any value is a false recall)."""
    from ..data.lift import _needle_name
    from ..niah.needles import make_key

    rng = random.Random(f"never-{seed}")
    names = sorted({nm for nd in sample.get("needles", []) if (nm := _needle_name(nd))}) or ["special magic number"]
    text = sample.get("context", "") + " ".join(nd.get("text", "") for nd in sample.get("needles", []))
    out = []
    while len(out) < n:
        key = make_key(rng)
        if key not in text:
            out.append({"question": rng.choice(pool(QUESTIONS_ONE, "heldout")).format(name=rng.choice(names), key=key), "key": key})
    return out


def retrieval_answers(model, tok, sample: dict, questions: list[str]) -> list[str]:
    """The same questions through the memory instead (`memory ask` on the input's text, the base model reading the
    focused evidence): the LIFT + retrieval comparison. Nothing found is an empty answer."""
    import tempfile

    from ..errors import NotFound
    from ..memory.api import SYSTEM, Memory

    reader = lambda prompt: _generate(model, tok, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}])  # noqa: E731
    out = []
    with tempfile.TemporaryDirectory(prefix="lift-rag-") as tmp:
        mem = Memory(Path(tmp) / "memory.db", embedder=None, generator=reader)
        try:
            mem.add_text(sample.get("context", ""), source="input")
            for q in questions:
                try:
                    out.append(mem.ask(q).answer or "")
                except NotFound:
                    out.append("")
        finally:
            mem.close()
    return out


def gate_statistics(model, tok, sets: dict[str, list[list[dict]]], out: Path) -> dict | None:
    """Mean gate per layer for each set of chats (None for adapters without a gate); gates.json + gates.png."""
    from .gated_memory import gate_means

    if not hasattr(model, "modules") or not any(hasattr(m, "gated_memory") for m in model.modules()):
        return None
    stats = {name: gate_means(model, [_ids_of(tok, m) for m in chats]) for name, chats in sets.items() if chats}
    write_json(out / "gates.json", stats)
    from ..eval.plots import line_chart

    line_chart({name: dict(enumerate(v)) for name, v in stats.items()}, out / "gates.png", title="mean gate per layer",
               ylabel="mean gate (0 = base model)", logx=False, xlabel="layer")
    return {name: round(sum(v) / len(v), 4) for name, v in stats.items()}


def evaluate(adapter_dir: str | Path, input_path: str | Path, out_dir: str | Path, control: int = 20,
             never: int = 20, route: str = "always") -> dict:
    from ..models import load_model
    from ..niah import GenSpec, generate_sample

    adapter_dir = Path(adapter_dir)
    sample = json.loads(Path(input_path).read_text())
    if not isinstance(sample, dict) or "needles" not in sample:
        raise UserError(f"{input_path} is not a sample JSON: write one with `longrecall niah generate` and pass one line of it")
    model, tok, manifest = load(str(adapter_dir))
    base = load_model(manifest["base_model"], dtype="float32").eval()
    ctx = json.loads((adapter_dir / CONTEXT).read_text())
    if route == "entity":
        routable(manifest)
    vocab = load_vocabulary(adapter_dir, input_path) if route == "entity" else None
    opened: dict[str, list[bool]] = {"memory questions": [], "in-context control": [], "never ingested": [], "ordinary chats": []}

    def gate(question: str, kind: str) -> bool:
        """Open or shut the adapter for this question (route entity); always open otherwise."""
        open_ = route_question(question, vocab)[0] if vocab is not None else True
        if manifest["adapter"] == "gated":
            set_route(model, open_)
        opened[kind].append(open_)
        return open_

    rows = []
    for q in needle_questions(sample):
        kept = q["text"] in ctx["head"] or q["text"] in ctx["tail"]
        row = {**q, "in_kept_context": kept, "adapter_opened": gate(q["question"], "memory questions")}
        for key, (m, mode) in {"adapter_none": (model, "none"), "adapter_truncated": (model, "truncated"),
                               "base_truncated": (base, "truncated"), "base_none": (base, "none")}.items():
            ans = _generate(m, tok, prompt_messages(adapter_dir, q["question"], mode))
            row[key] = {"answer": ans, "correct": found(q["answer"], ans)}
        rows.append(row)
    for row, answer in zip(rows, retrieval_answers(base, tok, sample, [q["question"] for q in rows])):
        row["retrieval_base"] = {"answer": answer, "correct": found(row["answer"], answer)}
    ctrl, ctrl_samples = [], []
    for i in range(control):
        spec = GenSpec(task="single", length=min(1024, sample.get("length", 1024)), depth=0.5, haystack="prose", seed=10_000 + i, phrasing="heldout")
        s = generate_sample(spec, tok)
        ctrl_samples.append(s)
        open_ = gate(s.question, "in-context control")
        outs = {name: _generate(m, tok, s.messages()) for name, m in (("adapter", model), ("base", base))}
        ctrl.append({"question": s.question, "answer": s.answers[0], "outputs": outs, "adapter_opened": open_,
                     **{name: found(s.answers[0], o) for name, o in outs.items()}})
    values = {nd["value"] for nd in sample.get("needles", []) if nd.get("value")}
    false = []
    for q in never_ingested(sample, never):
        open_ = gate(q["question"], "never ingested")
        ans = _generate(model, tok, prompt_messages(adapter_dir, q["question"], "none"))
        false.append({**q, "output": ans, "adapter_opened": open_, "false_recall": any(v in ans for v in values)})
    chats = []
    for c in CHATS:  # ordinary questions: does the adapter leave the base model's answer as it was?
        open_ = gate(c, "ordinary chats")
        outs = {name: _generate(m, tok, [{"role": "user", "content": c}]) for name, m in (("adapter", model), ("base", base))}
        chats.append({"question": c, "outputs": outs, "adapter_opened": open_, "same_as_base": outs["adapter"] == outs["base"]})
    out = Path(out_dir)
    if manifest["adapter"] == "gated":
        set_route(model, True)  # the gate statistics measure the learned gate itself
    gates = gate_statistics(model, tok, {
        "memory questions": [prompt_messages(adapter_dir, q["question"], "none") for q in rows],
        "in-context control": [s.messages() for s in ctrl_samples],
        "ordinary chats": [[{"role": "user", "content": c}] for c in CHATS]}, out)

    def acc(key, sel=lambda r: True):
        pick = [r for r in rows if sel(r)]
        return round(100 * sum(r[key]["correct"] for r in pick) / len(pick), 1) if pick else None

    outside = lambda r: not r["in_kept_context"]  # noqa: E731
    result = {
        "input": str(input_path), "input_tokens": manifest.get("input_tokens"), "adapter": manifest.get("adapter"),
        "route": route, "adapter_opened": {k: round(100 * sum(v) / len(v), 1) for k, v in opened.items() if v},
        "needles": len(rows), "outside_kept_context": sum(outside(r) for r in rows),
        "recall_no_context": acc("adapter_none"),
        "recall_truncated": acc("adapter_truncated"),
        "base_truncated": acc("base_truncated"),
        "base_no_context": acc("base_none"),
        "outside_adapter_truncated": acc("adapter_truncated", outside),
        "outside_base_truncated": acc("base_truncated", outside),
        "recall_retrieval": acc("retrieval_base"),
        "control_adapter": round(100 * sum(c["adapter"] for c in ctrl) / len(ctrl), 1) if ctrl else None,
        "control_base": round(100 * sum(c["base"] for c in ctrl) / len(ctrl), 1) if ctrl else None,
        "false_recall": round(100 * sum(f["false_recall"] for f in false) / len(false), 1) if false else None,
        "never_ingested_questions": len(false),
        "chats_same_as_base": round(100 * sum(c["same_as_base"] for c in chats) / len(chats), 1),
        "control_questions": len(ctrl),
        "mean_gate": gates,
        "ingest_seconds": manifest.get("seconds"),
    }
    write_json(out / "result.json", result)
    write_json(out / "questions.json", rows)
    write_json(out / "controls.json", ctrl)
    write_json(out / "never_ingested.json", false)
    write_json(out / "chats.json", chats)
    return result


def add_arguments(p) -> None:
    p.add_argument("--adapter", required=True, help="folder written by `longrecall lift ingest`")
    p.add_argument("--input", required=True, help="the sample JSON that was ingested")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--control", type=int, default=20, help="control questions about another text, asked with it in context")
    p.add_argument("--never", type=int, default=20, help="questions about keys never ingested, no context (false recall)")
    p.add_argument("--route", choices=["always", "entity"], default="always",
                   help="entity: the adapter answers only questions naming something the input names (lift/route.py)")


def main(a) -> None:
    r = evaluate(a.adapter, a.input, a.output_dir, a.control, a.never, a.route)
    print(json.dumps(r, indent=2))
