"""LIFT training data from one long input: overlapping segments, contextualized segments, auxiliary QA.

    longrecall data lift --input book.txt --output-dir runs/lift-data --qa cloze

Pure and seeded: the same input, tokenizer, config and seed give byte-identical files. QA comes from the known
needles of a synthetic Sample, from a model behind an OpenAI-compatible endpoint (kept only if its evidence is
verbatim in the input), or from cloze templates that need no model.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError

RECITE = "Recite part {part} of {parts} of the document, which starts about {pct}% of the way through it."
EXCERPT_INTRO = "Here are the beginning and the end of a long document you have read:"
CLOZE_Q = 'In the document, what fills the blank in this sentence? "{sentence}"'
QA_GEN_PROMPT = (
    "Read the passage and write {n} question-answer pairs about specific facts in it. Reply with only a JSON list of "
    'objects with keys "question", "answer" and "evidence" (a sentence copied exactly from the passage).\n\nPassage:\n{passage}'
)


@dataclass
class LiftDataConfig:
    """How one input becomes LIFT records."""

    seed: int = 0
    """Seed for every random choice (QA selection, phrasings)."""
    segment_length: int = 2048
    """Tokens per segment (the authors: 2048)."""
    segment_stride: int | None = None
    """Tokens between segment starts; None = 3/8 of segment_length (overlap 5/8)."""
    contextual: bool = True
    """Also build contextualized segments: head+tail excerpt + instruction to recite the segment."""
    context_budget: int = 512
    """Tokens of head+tail excerpt in contextualized segments and in QA with truncated context."""
    qa: str = "auto"
    """QA source: auto (needles when known, else model), needles, model, cloze, none."""
    qa_count: int = 10
    """Question-answer pairs wanted from the model or cloze (needles give one per needle)."""
    qa_phrasings: int = 3
    """Question phrasings per needle."""
    qa_context: str = "both"
    """QA records carry: none, truncated (head/tail excerpt), or both (one record of each)."""
    qa_window_sentences: int = 16
    """Consecutive sentences shown to the QA-generating model at a time."""
    qa_per_window: int = 2
    """Pairs asked from the model per window."""
    endpoint: str = "http://127.0.0.1:8000/v1"
    """OpenAI-compatible endpoint for model-generated QA (`longrecall serve`)."""
    qa_model: str = ""
    """Model name at the endpoint; empty = the first one it lists."""
    qa_timeout: float = 120.0
    """Seconds per QA-generation request."""
    retain_context: int = 0
    """Retain records (data/retain.py): questions about other generated texts, asked with that text in context."""
    retain_length: int = 512
    """Tokens of each retain_context record."""
    retain_chats: int = 0
    """Retain records: ordinary chats with no context, answered as the base model answers them (made at ingest)."""
    retain_absent: int = 0
    """Retain records: questions about keys the input never mentions; the answer says the memory lacks them."""


def stride_of(cfg: LiftDataConfig) -> int:
    return cfg.segment_stride or max(1, cfg.segment_length * 3 // 8)


def segment_spans(n_tokens: int, length: int = 2048, stride: int | None = None) -> list[tuple[int, int]]:
    """[start, end) spans of `length` tokens every `stride` (3/8·length by default); the last span ends at n_tokens."""
    stride = stride or max(1, length * 3 // 8)
    if n_tokens < length:
        raise UserError(f"input has {n_tokens} tokens, fewer than one segment ({length}): pass --segment-length {max(8, n_tokens // 2)} or a longer input")
    spans = [(s, s + length) for s in range(0, n_tokens - length + 1, stride)]
    if spans[-1][1] < n_tokens:
        spans.append((n_tokens - length, n_tokens))  # keep the tail: a last segment that ends at the last token
    return spans


def segments(input_ids: list[int], length: int = 2048, stride: int | None = None) -> list[list[int]]:
    """Overlapping segments of `input_ids` (loss on every token), tail kept."""
    return [list(input_ids[s:e]) for s, e in segment_spans(len(input_ids), length, stride)]


def head_tail(input_ids: list[int], tokenizer, budget: int) -> tuple[str, str]:
    """The first and last budget/2 tokens as text; the whole input as head when it fits."""
    if len(input_ids) <= budget:
        return tokenizer.decode(input_ids), ""
    h = budget // 2
    return tokenizer.decode(input_ids[:h]), tokenizer.decode(input_ids[len(input_ids) - (budget - h):])


def excerpt(head: str, tail: str) -> str:
    return f"{EXCERPT_INTRO}\n\n{head}" + (f"\n[...]\n{tail}" if tail else "")


def qa_messages(question: str, head: str | None = None, tail: str | None = None) -> list[dict]:
    """The user turn for a question, with or without the truncated context (ingest and ask share it)."""
    content = question if head is None else f"{excerpt(head, tail or '')}\n\nQuestion: {question}"
    return [{"role": "user", "content": content}]


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


# ---- QA sources: each returns [{question, answer, evidence, source}] ----

def _needle_name(needle: dict) -> str | None:
    from ..niah.needles import NAMES

    if needle.get("name"):
        return needle["name"]
    names = [n for train, held in NAMES.values() for n in train + held if n in needle.get("text", "")]
    return max(names, key=len) if names else None


def _as_dict(sample: Any) -> dict:
    """A Sample, its dict, or its list of needle dicts, as a dict with "needles"."""
    return {"needles": sample} if isinstance(sample, list) else sample if isinstance(sample, dict) else sample.to_dict()


def needle_qa(sample: Any, phrasings: int, rng: random.Random) -> list[dict]:
    """Questions about each known fact: per (name, key), several phrasings of the train pool (all values when a key
    has several); a cloze of the sentence for facts without a named value (chains, variables); the sample's own question."""
    from ..niah.needles import QUESTIONS_ALL_OF_KEY, QUESTIONS_ONE, plural, pool

    d = _as_dict(sample)
    groups: dict[tuple[str, str], list[dict]] = {}
    out = []
    for nd in d.get("needles", []):
        name = _needle_name(nd)
        if name is None and nd["value"] in nd.get("text", ""):
            sentence = nd["text"].replace(nd["value"], "____", 1)
            out.append({"question": CLOZE_Q.format(sentence=sentence), "answer": nd["value"], "evidence": nd["text"], "source": "needles"})
        elif name is not None:
            groups.setdefault((name, nd["key"]), []).append(nd)
    for (name, key), nds in groups.items():
        values = list(dict.fromkeys(n["value"] for n in nds))
        templates = pool(QUESTIONS_ONE if len(values) == 1 else QUESTIONS_ALL_OF_KEY, "train")
        for q in rng.sample(templates, min(phrasings, len(templates))):
            full = (f"The {name} for {key} is {values[0]}." if len(values) == 1
                    else f"The {plural(name)} for {key} are {', '.join(values)}.")
            out.append({"question": q.format(name=name, names=plural(name), key=key), "answer": rng.choice([", ".join(values), full]),
                        "evidence": " ".join(n.get("text", "") for n in nds), "source": "needles"})
    if d.get("question") and d.get("answers"):
        answer = " -> ".join(d["chain"]) if d.get("chain") else ", ".join(d["answers"])
        out.append({"question": d["question"], "answer": answer, "evidence": "", "source": "needles"})
    return out


_SPAN = re.compile(r"\b\d[\d,.:/-]*\d\b|\b\d\b|(?<=[a-z,;] )[A-Z][a-z]+(?: [A-Z][a-z]+)*")


def cloze_qa(text: str, count: int, rng: random.Random) -> list[dict]:
    """Mask a distinctive span (number, capitalised name, else a long rare word) of a sentence and ask for it."""
    sents = sentences(text)
    freq = Counter(re.findall(r"[A-Za-z]+", text.lower()))
    strong, weak = [], []  # numbers and names first; a long word used once only when those run out
    for s in dict.fromkeys(sents):  # unique sentences, in order
        if len(s) > 400:
            continue
        spans = [m.group(0) for m in _SPAN.finditer(s) if text.count(m.group(0)) == 1]
        rare = sorted((w for w in re.findall(r"[A-Za-z]{7,}", s) if freq[w.lower()] == 1), key=len)[-1:]
        (strong if spans else weak).extend([(s, spans[0])] if spans else [(s, w) for w in rare])
    picked = rng.sample(strong, min(count, len(strong)))
    picked += rng.sample(weak, min(count - len(picked), len(weak)))
    return [{"question": CLOZE_Q.format(sentence=s.replace(span, "____", 1)), "answer": span, "evidence": s, "source": "cloze"}
            for s, span in picked]


def endpoint_chat(base_url: str, model: str = "", timeout: float = 120.0) -> Callable[[list[dict]], str]:
    """A greedy chat function against an OpenAI-compatible server; a server that is down is a UserError."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=timeout)
    fix = f"no QA model at {base_url}: start it with `longrecall serve` or pass --qa cloze"
    try:
        name = model or client.models.list().data[0].id
    except (openai.APIConnectionError, openai.APITimeoutError, IndexError):
        raise UserError(fix) from None

    def chat(messages: list[dict]) -> str:
        try:
            r = client.chat.completions.create(model=name, messages=messages, temperature=0.0, max_tokens=512, seed=0)
        except (openai.APIConnectionError, openai.APITimeoutError):
            raise UserError(fix) from None
        except openai.APIStatusError as e:
            raise UserError(f"QA model {name!r} at {base_url} refused the request ({e.status_code}): set qa_model or pass --qa cloze") from None
        return r.choices[0].message.content or ""
    return chat


def _parse_pairs(reply: str) -> list[dict]:
    start, end = reply.find("["), reply.rfind("]")
    try:
        items = json.loads(reply[start:end + 1]) if 0 <= start < end else []
    except json.JSONDecodeError:
        return []
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("question"), str) and isinstance(i.get("answer"), str)]


def model_qa(text: str, cfg: LiftDataConfig, chat: Callable[[list[dict]], str], rng: random.Random) -> list[dict]:
    """Ask a model for QA pairs window by window; keep a pair only if its evidence (or answer) is verbatim in the input."""
    sents = sentences(text)
    w = cfg.qa_window_sentences
    windows = [sents[i:i + w] for i in range(0, len(sents), w)]
    rng.shuffle(windows)
    out, seen = [], set()
    for window in windows:
        if len(out) >= cfg.qa_count:
            break
        reply = chat([{"role": "user", "content": QA_GEN_PROMPT.format(n=cfg.qa_per_window, passage=" ".join(window))}])
        for p in _parse_pairs(reply):
            q, a, ev = p["question"].strip(), p["answer"].strip(), str(p.get("evidence") or "").strip()
            grounded = (ev and ev in text and a.lower() in ev.lower()) or (not ev and a in text)
            if a and q and grounded and q not in seen and len(out) < cfg.qa_count:
                seen.add(q)
                out.append({"question": q, "answer": a, "evidence": ev or a, "source": "model"})
    return out


# ---- assembling the dataset ----

def _chat_record(rid: str, kind: str, messages: list[dict], completion: str, **extra) -> dict:
    return {"id": rid, "kind": kind, "prompt": messages, "completion": [{"role": "assistant", "content": completion}], **extra}


def qa_pairs(text: str, cfg: LiftDataConfig, needles: Any, endpoint: Any, rng: random.Random) -> list[dict]:
    source = cfg.qa if cfg.qa != "auto" else ("needles" if needles is not None else "model")
    if source == "needles":
        if needles is None:
            raise UserError("qa=needles needs a synthetic Sample: pass a .json sample as --input, or --qa cloze")
        return needle_qa(needles, cfg.qa_phrasings, rng)
    if source == "cloze":
        return cloze_qa(text, cfg.qa_count, rng)
    if source == "model":
        chat = endpoint if callable(endpoint) else endpoint_chat(endpoint or cfg.endpoint, cfg.qa_model, cfg.qa_timeout)
        return model_qa(text, cfg, chat, rng)
    return []


def build_lift_dataset(text: str, tokenizer, cfg: LiftDataConfig | None = None, needles: Any = None,
                       endpoint: str | Callable[[list[dict]], str] | None = None,
                       base_reply: Callable[[list[dict]], str] | None = None) -> dict[str, list[dict]]:
    """{"segments", "contextual", "qa", "retain"} record lists. `needles`: a Sample, its dict, or its list of needle
    dicts; `endpoint`: a base URL or a chat function (messages -> reply) for model-generated QA; `base_reply`: the
    base model as a chat function, for retain chats."""
    cfg = cfg or LiftDataConfig()
    if cfg.qa not in {"auto", "needles", "model", "cloze", "none"} or cfg.qa_context not in {"none", "truncated", "both"}:
        raise UserError(f"qa={cfg.qa!r}, qa_context={cfg.qa_context!r}: qa is auto|needles|model|cloze|none, qa_context none|truncated|both")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    spans = segment_spans(len(ids), cfg.segment_length, stride_of(cfg))
    rng = random.Random(cfg.seed)
    head, tail = head_tail(ids, tokenizer, cfg.context_budget)
    parts: dict[str, list[dict]] = {"segments": [], "contextual": [], "qa": []}
    for i, (s, e) in enumerate(spans):
        parts["segments"].append({"id": f"seg-{i:05d}", "kind": "segment", "start": s, "end": e, "input_ids": ids[s:e]})
        if cfg.contextual:
            ask = RECITE.format(part=i + 1, parts=len(spans), pct=round(100 * s / len(ids)))
            msgs = [{"role": "user", "content": f"{excerpt(head, tail)}\n\n{ask}"}]
            parts["contextual"].append(_chat_record(f"ctx-{i:05d}", "contextual", msgs, tokenizer.decode(ids[s:e]), start=s, end=e))
    pairs = qa_pairs(text, cfg, needles, endpoint, rng)
    modes = {"none": [False], "truncated": [True], "both": [False, True]}[cfg.qa_context]
    for i, p in enumerate(pairs):
        for with_ctx in modes:
            msgs = qa_messages(p["question"], head, tail) if with_ctx else qa_messages(p["question"])
            parts["qa"].append(_chat_record(f"qa-{i:05d}-{'ctx' if with_ctx else 'bare'}", "qa", msgs, p["answer"],
                                            source=p["source"], evidence=p["evidence"], context="truncated" if with_ctx else "none"))
    parts["retain"] = retain_records(text, tokenizer, cfg, needles, base_reply)
    return parts


def retain_records(text: str, tokenizer, cfg: LiftDataConfig, needles: Any, base_reply) -> list[dict]:
    """The retain records the config asks for (none by default)."""
    from . import retain

    d = _as_dict(needles) if needles is not None else {}
    names = sorted({nm for nd in d.get("needles", []) if (nm := _needle_name(nd))})
    return (retain.context_records(cfg.retain_context, tokenizer, cfg.retain_length, cfg.seed)
            + retain.chat_records(cfg.retain_chats, base_reply)
            + retain.absent_records(cfg.retain_absent, names, text, cfg.seed))


def encode_record(record: dict, tokenizer) -> tuple[list[int], list[int]]:
    """(input_ids, labels): every token for segments; only the completion (assistant turn) for chat records."""
    if record["kind"] == "segment":
        return list(record["input_ids"]), list(record["input_ids"])
    prompt = tokenizer.apply_chat_template(record["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
    full = tokenizer.apply_chat_template(record["prompt"] + record["completion"], tokenize=True, return_dict=False)
    if full[:len(prompt)] != prompt:  # a template that re-renders earlier turns: fall back to prompt + answer + eos
        full = prompt + tokenizer(record["completion"][0]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return full, [-100] * len(prompt) + full[len(prompt):]


def token_stats(parts: dict[str, list[dict]], tokenizer) -> dict[str, dict]:
    stats = {}
    for name, records in parts.items():
        lens = [len(encode_record(r, tokenizer)[0]) for r in records]
        stats[name] = {"records": len(lens), "tokens": sum(lens), "max_tokens": max(lens, default=0)}
    return stats


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_lift_dataset(out_dir: str | Path, parts: dict[str, list[dict]], manifest: dict) -> Path:
    """One JSONL per part and manifest.json, each written atomically."""
    from ..io import write_json, write_jsonl

    out = Path(out_dir)
    for name, records in parts.items():
        write_jsonl(out / f"{name}.jsonl", records)
    write_json(out / "manifest.json", manifest)
    return out


def read_input(path: str | Path) -> tuple[str, dict | None]:
    """(text, sample dict or None): a .json/.jsonl Sample gives its context and known needles; any other file is text."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input {path} not found: pass a text file (or a .json sample) with --input")
    data = path.read_bytes()
    if b"\x00" in data:
        raise UserError(f"{path} looks binary (it has NUL bytes): pass a UTF-8 text file or a .json sample")
    try:
        raw = data.decode("utf-8-sig")  # strict: a Latin-1 or binary file is refused, not silently given U+FFFD
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}): convert it first, e.g. `iconv -f latin1 -t utf-8`") from None
    sample = None
    if path.suffix in {".json", ".jsonl"}:
        lines = [line for line in raw.splitlines() if line.strip()]
        if path.suffix == ".jsonl" and len(lines) > 1:
            raise UserError(f"{path} holds {len(lines)} samples; LIFT memorises one input: pass a .json sample or a "
                            "one-line .jsonl (e.g. `head -n 1`)")
        try:
            sample = json.loads(lines[0] if path.suffix == ".jsonl" else raw)
        except (json.JSONDecodeError, IndexError):
            raise UserError(f"{path} is not a JSON sample: rename it to .txt to ingest it as text") from None
        if not isinstance(sample, dict) or "context" not in sample:
            raise UserError(f"{path} has no 'context' field: pass a sample written by `longrecall niah generate`, or a .txt file")
        raw = sample["context"]
    if not raw.strip():
        raise UserError(f"input {path} is empty: pass a file with text in it")
    return raw, sample


def build_manifest(text: str, tokenizer_name: str, cfg: LiftDataConfig, parts: dict, tokenizer, input_path: str = "") -> dict:
    from ..config import to_dict

    return {"input": str(input_path), "input_sha256": sha256_text(text), "tokenizer": str(tokenizer_name), "seed": cfg.seed,
            "config": to_dict(cfg), "input_tokens": len(tokenizer(text, add_special_tokens=False)["input_ids"]),
            "counts": {k: len(v) for k, v in parts.items()}, "token_stats": token_stats(parts, tokenizer)}


def load_data_config(path: str | None, overrides: dict | None = None) -> LiftDataConfig:
    """A data config file, or an ingest config whose `data:` section holds it (configs/lift-cpu.yaml)."""
    from ..config import from_dict, load_yaml

    raw = load_yaml(path) if path else {}
    data = dict(raw.get("data", raw) if "data" in raw else raw)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(LiftDataConfig, data)


def add_arguments(parser) -> None:
    parser.add_argument("--input", required=True, help="long text file, or a .json sample (its needles give the QA)")
    parser.add_argument("--output-dir", required=True, help="folder for segments/contextual/qa .jsonl and manifest.json")
    parser.add_argument("--config", default=None, help="YAML (a data config, or an ingest config with a data: section)")
    parser.add_argument("--tokenizer", default="default", help="tokenizer name or folder (default: embedded SmolLM2)")
    parser.add_argument("--qa", default=None, choices=["auto", "needles", "model", "cloze", "none"], help="QA source")
    parser.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL for --qa model")
    parser.add_argument("--segment-length", type=int, default=None, help="tokens per segment")
    parser.add_argument("--seed", type=int, default=None)


def main(args) -> int:
    from ..models import load_tokenizer

    cfg = load_data_config(args.config, {"qa": args.qa, "endpoint": args.endpoint, "segment_length": args.segment_length, "seed": args.seed})
    text, sample = read_input(args.input)
    tok = load_tokenizer(args.tokenizer)
    parts = build_lift_dataset(text, tok, cfg, needles=sample)
    write_lift_dataset(args.output_dir, parts, build_manifest(text, args.tokenizer, cfg, parts, tok, args.input))
    print(f"wrote {', '.join(f'{len(v)} {k}' for k, v in parts.items())} to {args.output_dir}")
    return 0


lift_data_main = main
