"""Long documents packed into blocks of exactly N tokens (LongLoRA's recipe: join with EOS, cut, loss on every token).

    longrecall data pretrain --output-dir runs/data/pretrain --config configs/data-pretrain-cpu.yaml

Documents: generator haystacks with needles in them (the context of a sample: `prose`, `noise`, `needles`), the
user's own files (`user`: each .txt/.md file or .jsonl row is one document), and optionally short QA chats
(rendered with the chat template) at a share of the tokens. Everything streams: a document is read and tokenized
in pieces and blocks are written as they fill, into a temporary file renamed when the run completes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
from argparse import Namespace
from pathlib import Path
from typing import Iterator

from ..errors import UserError
from ..niah.haystacks import HAYSTACKS
from ..niah.tokens import encode
from . import common as C
from .common import apply_config  # noqa: F401 - the CLI calls <module>.apply_config for --config

READ_CHARS = 1 << 20  # characters read and tokenized at a time from a user file
TEXT_SUFFIXES = {".txt", ".md", ".text", ".markdown"}


def corpus_files(corpus: str | Path) -> list[Path]:
    path = Path(corpus)
    if not path.exists():
        raise UserError(f"corpus {path} does not exist: pass a .txt/.md/.jsonl file or a folder of them")
    if path.is_file():
        if path.suffix.lower() not in TEXT_SUFFIXES | {".jsonl"}:
            raise UserError(f"{path} has an unknown format '{path.suffix}': give .txt, .md or .jsonl text files")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES | {".jsonl"})
    if not files:
        raise UserError(f"corpus folder {path} holds no .txt, .md or .jsonl files: add some or point --corpus elsewhere")
    return files


def _cut(text: str) -> int:
    """Where to split a piece so the next one starts with ' word' (byte-level BPE never merges across that)."""
    i = len(text) - 1
    while i > 0:
        i = text.rfind(" ", 0, i)
        if i <= 0:
            break
        if i + 1 < len(text) and text[i + 1].isalnum() and not text[i - 1].isspace():
            return i
    return len(text)


def _file_pieces(path: Path, read_chars: int) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        carry = ""
        while chunk := fh.read(read_chars):
            if "\x00" in chunk:
                raise UserError(f"{path} looks binary: give .txt, .md or .jsonl text files")
            text = carry + chunk
            k = _cut(text)
            carry = text[k:]
            if text[:k]:
                yield text[:k]
        if carry:
            yield carry


def corpus_documents(corpus: str | Path, read_chars: int = READ_CHARS) -> Iterator[Iterator[str]]:
    """Each document as an iterator of text pieces: a text file, or one row of a .jsonl file."""
    for path in corpus_files(corpus):
        if path.suffix.lower() != ".jsonl":
            yield _file_pieces(path, read_chars)
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise UserError(f"{path}:{i} is not JSON: fix the line or rename the file to .txt") from None
                text = row.get("text", "") if isinstance(row, dict) else str(row)
                if text:
                    yield iter([text])


def generated_documents(mix: C.Mix, tok, seed: int, label: str) -> Iterator[Iterator[str]]:
    """Sample contexts (haystack + needles) from the generator, forever; record i is seeded on its own."""
    from ..niah.generate import generate_sample

    i = 0
    while True:
        for attempt in range(C._MAX_REDRAWS):  # a draw the length cannot hold (many needles, short document): redraw
            try:
                context = generate_sample(C.draw_spec(mix, seed, i, "train", label, attempt), tok).context
                break
            except UserError:
                if attempt == C._MAX_REDRAWS - 1:
                    raise
        yield iter([context])
        i += 1


def qa_documents(mix: C.Mix, tok, seed: int) -> Iterator[Iterator[str]]:
    """Short SFT chats rendered as plain text with the chat template."""
    from .sft import sft_record

    i = 0
    while True:
        make = lambda s, rng: sft_record(s, tok, rng)  # noqa: E731
        record, _ = C.generate_with_redraw(mix, tok, seed, i, "train", "pretrain-qa", make)
        text = tok.apply_chat_template(record["messages"], tokenize=False)
        yield iter([text if isinstance(text, str) else text[0]])
        i += 1


class Packer:
    """Collects token ids and hands out blocks of exactly `block` tokens; an EOS ends every document."""

    def __init__(self, block: int, eos: int):
        self.block, self.eos, self.buf = block, eos, []

    def add(self, ids) -> Iterator[list[int]]:
        self.buf.extend(ids)
        while len(self.buf) >= self.block:
            out, self.buf = self.buf[: self.block], self.buf[self.block:]
            yield out


def max_positions(tok, model: str) -> int | None:
    """The model's position limit: max_position_embeddings of its config, else the tokenizer's model_max_length."""
    from transformers import AutoConfig

    from ..models import resolve

    try:
        return int(AutoConfig.from_pretrained(resolve(model)).max_position_embeddings)
    except Exception:  # noqa: BLE001 - no config offline: fall back to the tokenizer's limit
        n = getattr(tok, "model_max_length", None)
        return int(n) if n and n < 10**7 else None


def check_block(block: int, limit: int | None, scaling: float, model: str) -> None:
    if block < 16:
        raise UserError(f"--block {block} is too small: use a context length such as 8192")
    if limit and block > limit * scaling:
        need = math.ceil(block / limit)
        raise UserError(
            f"--block {block} is longer than {model}'s {limit} positions x --position-scaling {scaling:g}: lower --block "
            f"to {int(limit * scaling)} or pass --position-scaling {need} (and train with the same scaling)"
        )


def build_pretrain(out_dir, tok, block: int, tokens: int, sources: list[tuple[str, float]], mix: C.Mix, qa_mix: float = 0.0,
                   qa: C.Mix | None = None, seed: int = 0, config: dict | None = None, read_chars: int = READ_CHARS) -> dict:
    """Write train.jsonl ({"input_ids": [block ints]} per line), manifest.json and README.md; return the manifest.

    `sources` are (haystack kind or 'user', weight); generated documents take task, length and needle kind from `mix`.
    """
    from tqdm.auto import tqdm

    if tok.eos_token_id is None:
        raise UserError("the tokenizer has no EOS token to join documents with: pick a model whose tokenizer sets one")
    n_blocks = max(1, tokens // block)
    streams: dict[str, Iterator] = {}
    for name, _ in sources:
        if name == "user":
            streams[name] = corpus_documents(mix.corpus, read_chars)
        else:
            own = dataclasses.replace(mix, haystacks=[(name, 1.0)])
            streams[name] = generated_documents(own, tok, seed, f"pretrain-{name}")
    if qa_mix > 0:
        streams["qa"] = qa_documents(qa, tok, seed)
    weights = dict(sources)
    rng = random.Random(f"longrecall-pretrain-{seed}")
    packer = Packer(block, tok.eos_token_id)
    docs = {k: 0 for k in streams}
    toks = {k: 0 for k in streams}
    written, exhausted = 0, []
    names = ["train.jsonl", "manifest.json", "README.md"]
    with C.atomic_files(Path(out_dir), names) as (fh, mf, card_fh), tqdm(total=n_blocks, desc="blocks") as bar:

        def emit(ids) -> None:
            nonlocal written
            for b in packer.add(ids):
                if written < n_blocks:  # the tail past the last whole block wanted is dropped
                    fh.write(json.dumps({"input_ids": b}) + "\n")
                    written += 1
                    bar.update(1)

        while written < n_blocks:
            active = [k for k in weights if k in streams and weights[k] > 0]
            seen = sum(toks.values())
            if "qa" in streams and toks["qa"] < qa_mix * seen:
                name = "qa"
            elif active:
                name = C.weighted_choice(rng, [(k, weights[k]) for k in active])
            else:
                break
            doc = next(streams[name], None)
            if doc is None:  # a finite corpus ran out; the generated sources go on
                exhausted.append(name)
                del streams[name]
                continue
            docs[name] += 1
            for piece in doc:
                ids = encode(tok, piece)[0].tolist()
                toks[name] += len(ids)
                emit(ids)
            emit([tok.eos_token_id])
        if written == 0:
            total = sum(toks.values()) + sum(docs.values())
            raise UserError(f"the corpus gives {total} tokens, less than one block of {block}: lower --block or add text")
        manifest = {
            "kind": "pretrain", "seed": seed, "config": config, "block": block, "blocks": written, "tokens": written * block,
            "requested_tokens": tokens, "documents": docs, "document_tokens": toks, "exhausted": exhausted,
            "qa_share": round(toks.get("qa", 0) / max(1, sum(toks.values())), 4), "eos_token_id": tok.eos_token_id,
            "tokenizer": C.tokenizer_name(tok), "generator_version": C.GENERATOR_VERSION, "longrecall_version": C.__version__,
        }
        mf.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        card_fh.write(CARD.format(**manifest, load=C.load_snippet("this folder"), docs=", ".join(f"{k} {v}" for k, v in docs.items())))
    return manifest


CARD = """# longrecall pretraining blocks

Long-context language-modelling data made by `longrecall data pretrain` (longrecall {longrecall_version}, generator
version {generator_version}, tokenizer `{tokenizer}`, seed {seed}): documents tokenized, each followed by EOS
(id {eos_token_id}), concatenated and cut into blocks of exactly {block} tokens, as LongLoRA trains. Train with the
next-token loss on every token (`longrecall train longlora --pretrain train.jsonl`).

Documents: generator haystacks with needles in them (the context of a needle-in-a-haystack sample), the user's own
files, and short QA chats rendered with the chat template (share of tokens: {qa_share}). Documents per source:
{docs}. Exhausted sources: {exhausted}.

## Format
One JSON object per line: `{{"input_ids": [...]}}`, {blocks} blocks, {tokens} tokens.

{load}
"""


def add_arguments(p) -> None:
    p.add_argument("--config", default=None, help="YAML file whose keys are these flags (flags given here win)")
    p.add_argument("--output-dir", default=None, help="folder for train.jsonl, manifest.json, README.md")
    p.add_argument("--block", default="8192", help="tokens per block (8k = 8192)")
    p.add_argument("--tokens", default="2M", help="tokens to write, rounded down to whole blocks (2M = 2*1024*1024)")
    p.add_argument("--corpus", default=None, help="file or folder of .txt/.md/.jsonl: your own documents (source 'user')")
    p.add_argument("--haystacks", default=None, help=f"document sources, weights allowed: {', '.join(HAYSTACKS)} (default prose; +user with --corpus)")
    p.add_argument("--tasks", default=",".join(C.FAMILIES), help="task families whose needles go into generated documents")
    p.add_argument("--needle-kinds", default="number,word,uuid")
    p.add_argument("--doc-lengths", default=None, help="generated document lengths in tokens, weights allowed (default: the block)")
    p.add_argument("--qa-mix", type=float, default=0.0, help="share of tokens from short QA chats (0..1)")
    p.add_argument("--qa-lengths", default="512,1k", help="lengths of the QA chats")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", default="default", help="model whose tokenizer and position limit apply")
    p.add_argument("--position-scaling", type=float, default=1.0, help="position interpolation factor the model will train with")


def main(a) -> dict:
    from ..models import load_tokenizer

    if not a.output_dir:
        raise UserError("no output folder: pass --output-dir DIR")
    block, tokens = C.parse_count(a.block), C.parse_count(a.tokens)
    if not 0.0 <= a.qa_mix < 1.0:
        raise UserError(f"--qa-mix {a.qa_mix} is outside 0..1: give a share such as 0.1")
    default = "prose" + (",user" if a.corpus else "")
    sources = C.parse_weighted(a.haystacks or default, lambda h: C._check(h, HAYSTACKS, "haystack"), "haystack")
    if any(h == "user" for h, _ in sources) and not a.corpus:
        raise UserError("source 'user' needs your text: pass --corpus FILE_OR_FOLDER or drop 'user' from --haystacks")
    if a.corpus:
        corpus_files(a.corpus)  # a missing corpus or an unknown format fails before any work
    # Generated documents draw task, length and needle kind from `mix`; their haystack is the source's own.
    common = dict(tasks=a.tasks, needle_kinds=a.needle_kinds)
    mix = C.mix_from_args(Namespace(**common, lengths=a.doc_lengths or str(block), haystacks="prose", corpus=a.corpus))
    qa = C.mix_from_args(Namespace(**common, lengths=a.qa_lengths, haystacks="noise,prose,needles", corpus=None))
    tok = load_tokenizer(a.tokenizer)
    check_block(block, max_positions(tok, a.tokenizer), a.position_scaling, a.tokenizer)
    m = build_pretrain(a.output_dir, tok, block, tokens, sources, mix, a.qa_mix, qa, a.seed, C.config_dict(a))
    print(f"wrote {m['blocks']} blocks of {block} tokens to {a.output_dir}/train.jsonl (documents: {m['documents']})")
    return m
