"""Exact-length sample assembly: tokenize a haystack once, cut it by token offsets, insert needles at sentence
boundaries, and verify the whole chat-formatted prompt with the tokenizer.

    longrecall niah generate --task single --length 4096 --depth 0.5 --n 4 --out samples.jsonl
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..errors import UserError
from . import haystacks as H
from . import tokens as T
from .task import pool as phrasing_pool
from .families import get_family

GENERATOR_VERSION = "2"

# train: the fixed training pools; grammar: those grown by niah/grammar.py; heldout: evaluation only; any: both.
PHRASINGS = ("train", "grammar", "heldout", "any")

SYSTEMS = (
    [
        "You are a helpful assistant.",
        "You are a careful reader who answers questions about long documents.",
        "You answer questions using only the text you are given.",
    ],
    ["You are an assistant with an excellent memory for details."],
)
INSTRUCTIONS = (
    [
        "Read the following text carefully. A question about it follows.",
        "Below is a long document. Some facts are hidden in it; answer the question at the end.",
        "You will be given a text and then a question. The answer is in the text.",
        "Here is a document. Read it and answer the question that comes after it.",
    ],
    ["Here is some material. Afterwards I will ask something about it.", "Study this passage; a question follows."],
)


@dataclass
class GenSpec:
    """What to generate. Every field is also a `longrecall niah generate` flag."""

    task: str = "single"  # a family name from niah.families.FAMILIES
    length: int = 2048  # target tokens: chat-formatted prompt + answer budget
    depth: float = 0.5  # where the (first) target needle goes, 0..1 of the haystack
    haystack: str = "noise"  # noise | prose | user | needles
    needle_kind: str = "number"  # number | word | uuid
    seed: int = 0
    corpus: str | None = None  # file or folder for haystack 'user'
    phrasing: str = "train"  # train | grammar | heldout | any: which pool of templates and questions
    n_needles: int | None = None  # all_needles / multivalue / multiquery count (None: family default, random)
    n_distractors: int | None = None
    hops: int | None = None  # chain / vartrack hops (None: random 1-4)
    direction: str = "any"  # forward | backward | any (chains)
    answer_prefix: bool = False  # RULER-style answer opening appended after the generation prompt
    answer_budget: int | None = None  # tokens left for the answer (None: the family's default)
    haystack_seed: int | None = None  # defaults to seed: samples with the same seed share one haystack

    def validate(self) -> None:
        get_family(self.task)
        if self.haystack not in H.HAYSTACKS:
            raise UserError(f"unknown haystack '{self.haystack}': use one of {', '.join(H.HAYSTACKS)}")
        if self.needle_kind not in ("number", "word", "uuid"):
            raise UserError(f"unknown needle kind '{self.needle_kind}': use number, word or uuid")
        if self.phrasing not in PHRASINGS:
            raise UserError(f"unknown phrasing '{self.phrasing}': use {', '.join(PHRASINGS)}")
        if self.direction not in ("forward", "backward", "any"):
            raise UserError(f"unknown direction '{self.direction}': use forward, backward or any")
        if not 0.0 <= self.depth <= 1.0:
            raise UserError(f"depth {self.depth} is outside 0..1: pass a fraction such as 0.25")
        if self.length < 64:
            raise UserError(f"length {self.length} is too small: use at least a few hundred tokens")


@dataclass
class Sample:
    id: str
    task: str
    haystack: str
    needle_kind: str
    length: int
    depth: float
    seed: int
    phrasing: str
    system: str
    instruction: str
    context: str
    question: str
    answer_prefix: str
    answers: list[str]
    metric: str
    chain: list[str]
    needles: list[dict]
    prompt_tokens: int
    answer_budget: int
    value_kind: str = ""
    generator_version: str = GENERATOR_VERSION
    extra: dict = field(default_factory=dict)

    def user_message(self, context: str | None = None) -> str:
        ctx = self.context if context is None else context
        return f"{self.instruction}\n\n{ctx}\n\n{self.question}"

    def messages(self, context: str | None = None) -> list[dict]:
        """The chat to send (system + user). `context` replaces the haystack, e.g. with retrieved chunks."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user_message(context)}]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Sample":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class _Hay:
    """A haystack tokenized once: text, token start offsets and sentence start offsets (chars)."""

    def __init__(self, sentences: list[str], tok):
        starts, pos = [], 0
        for s in sentences:
            starts.append(pos)
            pos += len(s) + 1
        self.text = " ".join(sentences)
        self.tok_starts = T.cached_starts(tok, self.text)
        self.sent_starts = np.asarray(starts, dtype=np.int64)

    @property
    def n_tokens(self) -> int:
        return len(self.tok_starts)


_CACHE: dict = {}


def _haystack(spec: GenSpec, tok, n_tokens: int, dense) -> _Hay:
    """A tokenized haystack of at least n_tokens (cached per kind, seed, corpus and tokenizer; never for dense)."""
    seed = spec.seed if spec.haystack_seed is None else spec.haystack_seed
    key = (spec.haystack, seed, spec.corpus, getattr(tok, "name_or_path", id(tok)), len(tok))
    hay = None if spec.haystack == "needles" else _CACHE.get(key)
    if hay is not None and hay.n_tokens > n_tokens:
        return hay
    stream = H.sentence_stream(spec.haystack, seed, spec.corpus, dense)
    sentences: list[str] = []
    probe = [next(stream) for _ in range(200)]
    sentences.extend(probe)
    per_token = len(" ".join(probe)) / max(1, _count(tok, " ".join(probe)))
    chars = max(4096, int(n_tokens * per_token * 1.03) + 512)
    while True:
        total = sum(len(s) + 1 for s in sentences)
        while total < chars:
            s = next(stream)
            sentences.append(s)
            total += len(s) + 1
        hay = _Hay(sentences, tok)
        if hay.n_tokens > n_tokens:
            break
        chars = int(chars * 1.1 * (n_tokens + 1) / max(1, hay.n_tokens))
    if spec.haystack != "needles":
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = hay
    return hay


def _count(tok, text: str) -> int:
    return T.count(tok, text)


def _template(tok, system: str, user: str) -> str:
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    out = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return out if isinstance(out, str) else out[0]


def _assemble(hay: _Hay, k: int, needles, seed_rng) -> tuple[str, list[int], list[tuple[int, int, int]]]:
    """Cut the haystack at token k and insert needles at the sentence boundary at or before their depth.
    Returns the context, each needle's char offset, and the haystack spans it copies (context offset, haystack
    offset, length), so its tokens can be spliced from the haystack's (tokens.encode_spliced)."""
    end = int(hay.tok_starts[k]) if k < hay.n_tokens else len(hay.text)
    text = hay.text[:end].rstrip()
    bounds = hay.sent_starts[hay.sent_starts < max(end, 1)]
    inserts = []
    for i, nd in enumerate(needles):
        if k == 0:
            pos = len(text)
        else:  # depth 1.0 lands at the start of the last (possibly cut) sentence
            c = int(hay.tok_starts[min(int(nd.depth * k), k - 1, hay.n_tokens - 1)])
            j = int(np.searchsorted(bounds, c, side="right")) - 1
            pos = int(bounds[j]) if j >= 0 else 0
        inserts.append((pos, i))
    inserts.sort()
    pieces, offsets, last, shift, copies = [], [0] * len(needles), 0, 0, []
    for pos, i in inserts:
        chunk = text[last:pos]
        pieces.append(chunk)
        copies.append((shift, last, len(chunk)))
        shift += len(chunk)
        if pos >= len(text) and text:
            pieces.append(" ")
            shift += 1
        offsets[i] = shift
        piece = needles[i].text + ("" if pos >= len(text) else " ")
        pieces.append(piece)
        shift += len(piece)
        last = pos
    pieces.append(text[last:])
    copies.append((shift, last, len(text) - last))
    joined = "".join(pieces)
    context = joined.strip()
    lead = len(joined) - len(joined.lstrip())
    copies = [(max(0, c - lead), h + max(0, lead - c), min(n - max(0, lead - c), len(context) - max(0, c - lead)))
              for c, h, n in copies]
    return context, offsets, [x for x in copies if x[2] > 0]


def _generic_dense(rng: random.Random) -> str:
    """Needle-shaped filler for families without their own (chains, variable tracking)."""
    from . import needles as N

    name = rng.choice(N.NAMES["number"][0])
    return N.needle_sentence(rng.choice(N.NEEDLE_TEMPLATES[0]), name, N.make_key(rng), N.make_value("number", rng))


def sample_id(spec: GenSpec) -> str:
    base = f"{spec.task}-{spec.haystack}-{spec.needle_kind}-L{spec.length}-D{spec.depth:.3f}-S{spec.seed}-{spec.phrasing}"
    extra = f"{spec.n_needles}-{spec.n_distractors}-{spec.hops}-{spec.direction}-{spec.corpus}-{spec.haystack_seed}"
    return base + "-" + hashlib.sha1(extra.encode()).hexdigest()[:6]


def generate_sample(spec: GenSpec, tok) -> Sample:
    """One sample whose chat-formatted prompt + answer budget measures spec.length tokens (1% or 16 tokens)."""
    spec.validate()
    sid = sample_id(spec)
    rng = random.Random(sid)
    task = get_family(spec.task).build(spec, rng)
    system = rng.choice(phrasing_pool(SYSTEMS, spec.phrasing))
    instruction = rng.choice(phrasing_pool(INSTRUCTIONS, spec.phrasing))
    budget = spec.answer_budget if spec.answer_budget is not None else task.answer_budget
    prefix = task.answer_prefix if spec.answer_prefix else ""
    target = spec.length - budget
    tol = max(16, spec.length // 100)
    overhead = _count(tok, _template(tok, system, f"{instruction}\n\n\n\n{task.question}") + prefix)
    needle_tokens = sum(_count(tok, " " + n.text) for n in task.needles)
    k = target - overhead - needle_tokens
    if k < 0:
        need = overhead + needle_tokens + budget
        raise UserError(
            f"length {spec.length} cannot hold the {spec.task} question, {len(task.needles)} needles and a "
            f"{budget}-token answer ({need} tokens): raise --length to at least {need + 32} or use fewer needles"
        )
    hay = _haystack(spec, tok, k + 64, task.dense or _generic_dense)
    for _ in range(5):
        context, offsets, copies = _assemble(hay, k, task.needles, rng)
        prompt = _template(tok, system, f"{instruction}\n\n{context}\n\n{task.question}") + prefix
        at = prompt.find(context)
        starts = T.encode_spliced(tok, prompt, [(at + c, h, n) for c, h, n in copies], hay.text, hay.tok_starts)
        measured = len(starts)
        delta = target - measured
        if 0 <= delta <= tol or (k == 0 and delta >= 0):
            break
        k = max(0, k + delta - (2 if delta < 0 else 0))
    else:
        raise UserError(f"could not fit length {spec.length} within {tol} tokens: report this with the tokenizer name")
    ctx_start = at  # where the context starts in the prompt (found while measuring it)
    needles = []
    for nd, off in zip(task.needles, offsets):
        tok_off = int(np.searchsorted(starts, ctx_start + off, side="right")) - 1
        needles.append(
            {"text": nd.text, "key": nd.key, "value": nd.value, "role": nd.role, "char_offset": off,
             "token_offset": tok_off, "depth": round(tok_off / max(1, measured), 4)}
        )
    return Sample(
        id=sid, task=spec.task, haystack=spec.haystack, needle_kind=spec.needle_kind, length=spec.length,
        depth=spec.depth, seed=spec.seed, phrasing=spec.phrasing, system=system, instruction=instruction,
        context=context, question=task.question, answer_prefix=prefix, answers=task.answers, metric=task.metric,
        chain=task.chain, needles=needles, prompt_tokens=measured, answer_budget=budget, value_kind=task.value_kind,
    )


def generate_samples(specs: Iterable[GenSpec], tok, progress: bool = True) -> list[Sample]:
    from tqdm.auto import tqdm

    specs = list(specs)
    return [generate_sample(s, tok) for s in tqdm(specs, desc="generate", disable=not progress or len(specs) < 2)]
