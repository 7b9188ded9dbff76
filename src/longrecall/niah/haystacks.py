"""Haystack sources: repeated noise, varied procedural prose, the user's own text, and needle-dense text.

    longrecall niah generate --haystack prose --length 4096 ...
"""
from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UserError

NOISE = [
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
]

# Word lists for the procedural prose: wide vocabulary, no digits (digits would look like needles).
_SUBJ = (
    "the old fisherman|a young teacher|the committee|my neighbour|the baker across the street|a travelling musician|"
    "the village council|our guide|the librarian|a quiet student|the captain|the gardener|a retired engineer|"
    "the mayor's assistant|the night nurse|a curious child|the orchestra|the farmer's daughter|the chess club|"
    "an elderly painter|the delivery driver|the museum curator|a stray cat|the research team|the choir|the blacksmith"
).split("|")
_VERB_T = (
    "repaired|painted|described|carried|questioned|praised|ignored|examined|borrowed|polished|sketched|rebuilt|"
    "admired|measured|collected|translated|forgot|discovered|cleaned|photographed|replaced|studied|hid|sold"
).split("|")
_OBJ = (
    "the wooden bridge|a broken lantern|the harvest records|an unfinished letter|the copper kettle|a map of the coast|"
    "the festival banners|an old violin|the greenhouse roof|a basket of pears|the stained glass window|a worn saddle|"
    "the town clock|a box of seeds|the railway timetable|a silk scarf|the fountain|a collection of shells|"
    "the weathervane|a leather journal|the bakery sign|a stack of blankets|the rowing boat|a porcelain vase"
).split("|")
_PLACE = (
    "near the harbour|behind the mill|in the valley|at the edge of the forest|beside the river|on the hill|"
    "in the market square|under the bridge|at the station|in the courtyard|along the cliffs|by the lake|"
    "outside the chapel|in the orchard|on the northern road|inside the workshop"
).split("|")
_TIME = (
    "early in the morning|after the storm|during the winter|before the festival|late one evening|on a windy afternoon|"
    "at dawn|in the spring|when the tide was low|after supper|during the long summer|on the first frosty day"
).split("|")
_ADJ = (
    "quiet|bright|ancient|crowded|peaceful|muddy|golden|narrow|forgotten|lively|misty|enormous|fragile|"
    "cheerful|solemn|crooked|fragrant|humble|restless|weathered"
).split("|")
_NOUN = (
    "lane|garden|meadow|workshop|kitchen|tavern|hallway|orchard|pier|attic|meeting|journey|season|song|"
    "conversation|evening|festival|library|village|river"
).split("|")
_ADV = "slowly|carefully|happily|reluctantly|quietly|eagerly|patiently|suddenly|gracefully|proudly".split("|")
_FEEL = "tired|hopeful|amused|curious|relieved|nervous|grateful|puzzled|content|restless".split("|")
_CONN = "Meanwhile|Later|Afterwards|Even so|For a while|In the end|At first|Still|Then|Of course".split("|")

_TEMPLATES = [
    "{S} {V} {O} {P}.",
    "{T}, {s} {V} {o}.",
    "{C}, {s} {adv} {V} {o} {P}.",
    "The {adj} {noun} {P} was where {s} {V} {o}.",
    "Nobody expected that {s} {V} {o} {t}.",
    "{S} felt {feel} after they {V} {o}.",
    "It was a {adj} {noun}, and {s} {adv} {V} {o}.",
    "{C}, the {adj} {noun} grew {adj2} as {s} {V} {o}.",
    "Some say {s} {V} {o} only because the {noun} was {adj}.",
    "{S} {V} {o}, then walked {P} feeling {feel}.",
    "Whenever the {noun} turned {adj}, {s} {V} {o} {t}.",
    "Was it {s} who {V} {o} {P}? Nobody could say.",
]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


_SLOTS = [_SUBJ, _OBJ, _TEMPLATES, _VERB_T, _PLACE, _TIME, _CONN, _ADV, _ADJ, _ADJ, _NOUN, _FEEL]


def prose_block(n: int, rng: np.random.Generator) -> list[str]:
    """n varied procedural sentences (no digits), drawn in bulk for speed."""
    idx = [rng.integers(0, len(slot), n) for slot in _SLOTS]
    out = []
    for i in range(n):
        s, o, t, v, p, tm, c, adv, adj, adj2, noun, feel = (slot[ix[i]] for slot, ix in zip(_SLOTS, idx))
        out.append(t.format(S=_cap(s), s=s, V=v, O=o, o=o, P=p, T=_cap(tm), t=tm, C=c, adv=adv, adj=adj, adj2=adj2, noun=noun, feel=feel))
    return out


def _np_rng(label: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little"))


def prose_text(n_sentences: int, seed: int) -> str:
    """Varied procedural prose of `n_sentences` sentences (held-out text for perplexity, haystacks)."""
    return " ".join(prose_block(n_sentences, _np_rng(f"prose-{seed}")))


_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_TEXT_SUFFIXES = {".txt", ".md", ".jsonl", ".text", ".markdown"}


def split_sentences(text: str) -> list[str]:
    """Split text into sentences at ., ! or ? followed by whitespace and a capital; paragraphs are kept apart."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if para:
            out.extend(s for s in _SENT_SPLIT.split(para) if s)
    return out


def _read_file(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise UserError(f"{path} looks binary: give .txt, .md or .jsonl text files")
    text = raw.decode("utf-8", errors="replace")
    if path.suffix == ".jsonl":
        parts = []
        for line in text.splitlines():
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise UserError(f"{path} has a line that is not JSON: fix it or rename the file to .txt") from None
                parts.append(row.get("text", "") if isinstance(row, dict) else str(row))
        text = "\n\n".join(parts)
    return text


def package_docs_text(min_chars: int = 2000) -> str:
    """Real human-written prose available offline: the long descriptions (READMEs) of the installed Python
    packages, code blocks and markup lines removed. Used as a held-out 'real text' haystack (`--corpus pkgdocs`)."""
    import importlib.metadata as md

    texts = []
    for dist in sorted(md.distributions(), key=lambda d: (d.metadata.get("Name") or "").lower()):
        body = dist.metadata.get_payload() if hasattr(dist.metadata, "get_payload") else ""
        body = body or dist.metadata.get("Description") or ""
        body = re.sub(r"```.*?```", " ", body, flags=re.S)
        lines = [ln for ln in body.splitlines() if not re.match(r"\s*([#|<>!\[*=\-`$]|\.\.|http)", ln)]
        text = re.sub(r"[`*_]+|\[([^\]]*)\]\([^)]*\)", r"\1", "\n".join(lines))
        if len(text) >= min_chars:
            texts.append(text)
    return "\n\n".join(texts)


def stdlib_docs_text(min_chars: int = 300) -> str:
    """Real human-written prose for *training* haystacks, offline and disjoint from `pkgdocs` (the held-out real
    text): the docstrings of Python's standard library, read with `ast` from its sources (nothing is imported)."""
    import ast
    import os

    root = Path(os.__file__).parent
    texts = []
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        if any(part in ("test", "tests", "idlelib", "site-packages", "lib2to3") for part in path.parts[len(root.parts):]):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= min_chars:
                    texts.append(" ".join(ln for ln in doc.splitlines() if not re.match(r"\s*(>>>|\.\.\.|[-=~*]{3,})", ln)))
    return "\n\n".join(dict.fromkeys(texts))


@functools.lru_cache(maxsize=4)
def load_corpus(corpus: str | Path) -> list[str]:
    """Sentences of a user corpus (a file or a folder of .txt/.md/.jsonl files, read in sorted order).
    The name `pkgdocs` gives the READMEs of the installed packages (real prose, offline; the scorecard's held-out real
    text), `stdlib` the docstrings of Python's standard library (real prose for training, disjoint from pkgdocs)."""
    if str(corpus) == "stdlib":
        pkg = set(load_corpus("pkgdocs"))
        sentences = [s for s in split_sentences(stdlib_docs_text()) if len(s.split()) >= 4 and not re.search(r"\d{4,}", s)
                     and s not in pkg]
        return sentences
    if str(corpus) == "pkgdocs":
        sentences = [s for s in split_sentences(package_docs_text()) if len(s.split()) >= 4 and not re.search(r"\d{4,}", s)]
        if not sentences:
            raise UserError("no installed package carries a README: pass --corpus with your own text files")
        return sentences
    path = Path(corpus)
    if not path.exists():
        raise UserError(f"corpus {path} does not exist: pass a .txt/.md/.jsonl file or a folder of them")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in _TEXT_SUFFIXES)
    sentences = []
    for f in files:
        sentences.extend(split_sentences(_read_file(f)))
    if not sentences:
        raise UserError(f"corpus {path} holds no text: add .txt, .md or .jsonl files with sentences")
    return sentences


def sentence_stream(kind: str, seed: int, corpus: str | None = None, needle_maker: Callable | None = None):
    """Yield haystack sentences forever for `kind` (noise, prose, user, needles)."""
    rng = random.Random(f"hay-{kind}-{seed}")
    if kind == "noise":
        while True:
            yield from NOISE
    elif kind == "prose":
        nrng = _np_rng(f"hay-prose-{seed}")
        while True:
            yield from prose_block(2048, nrng)
    elif kind == "user":
        if not corpus:
            raise UserError("haystack 'user' needs a corpus: pass --corpus FILE_OR_FOLDER")
        sents = load_corpus(str(corpus))
        start = rng.randrange(len(sents))
        # Start at a seeded sentence and wrap around: a short corpus is repeated rather than refused.
        i = start
        while True:
            yield sents[i]
            i = (i + 1) % len(sents)
    elif kind == "needles":
        if needle_maker is None:
            raise UserError("haystack 'needles' needs a needle maker (internal)")
        while True:
            yield needle_maker(rng)
    else:
        raise UserError(f"unknown haystack '{kind}': use one of {', '.join(HAYSTACKS)}")


HAYSTACKS = ("noise", "prose", "user", "needles")
