"""`longrecall niah generate`, `niah families` and `niah attacks`: write task samples, list families, audit the reward."""
from __future__ import annotations

import argparse
import itertools
import time

from ..config import load_yaml
from ..errors import UserError
from ..io import write_jsonl
from ..units import MAX_LENGTH, parse_depths, parse_lengths
from .families import FAMILIES, get_family
from .generate import GenSpec, generate_samples


def int_list(text: str) -> list[int]:
    """'1k,2048,4K' -> [1024, 2048, 4096] (the one length parser, longrecall.units)."""
    return parse_lengths(text)


def depth_list(text: str) -> list[float]:
    """'0,0.5,1' or '0,50%,100%' -> fractions (the one depth parser, longrecall.units)."""
    return parse_depths(text)


def str_list(text: str) -> list[str]:
    return [p.strip() for p in str(text).split(",") if p.strip()]


def add_spec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", "--tasks", dest="task", default="single", help=f"comma list of families: {', '.join(FAMILIES)}")
    p.add_argument("--length", "--lengths", dest="length", default="2048", help="comma list of target lengths in tokens (2k = 2048)")
    p.add_argument("--depth", "--depths", dest="depth", default="0.5", help="comma list of depths, fractions or percentages")
    p.add_argument("--haystack", default="noise", help="comma list: noise, prose, user, needles")
    p.add_argument("--needle-kind", default="number", help="comma list: number, word, uuid")
    p.add_argument("--corpus", default=None, help="file or folder of .txt/.md/.jsonl for --haystack user")
    p.add_argument("--phrasing", default="train", choices=["train", "grammar", "heldout", "any"], help="template pool (grammar: the train pool grown by a compositional grammar)")
    p.add_argument("--n-needles", type=int, default=None, help="needle count for all_needles/multivalue/multiquery")
    p.add_argument("--n-distractors", type=int, default=None)
    p.add_argument("--hops", type=int, default=None, help="hops for chain/vartrack (1-4)")
    p.add_argument("--direction", default="any", choices=["forward", "backward", "any"])
    p.add_argument("--answer-prefix", action="store_true", help="append a RULER-style answer opening")
    p.add_argument("--seed", type=int, default=0, help="first seed; sample i of a cell uses seed+i")
    p.add_argument("--n", type=int, default=1, help="samples per (task, length, depth, haystack, kind) cell")


def specs_from_args(a) -> list[GenSpec]:
    if a.n < 1:
        raise UserError(f"--n {a.n}: ask for at least 1 sample per cell")
    too_long = [L for L in int_list(a.length) if L > MAX_LENGTH]
    if too_long and not getattr(a, "allow_huge", False):
        raise UserError(f"length {too_long[0]} is over {MAX_LENGTH} tokens (a typo?): pass --allow-huge to generate it anyway")
    specs = []
    cells = itertools.product(str_list(a.task), int_list(a.length), depth_list(a.depth), str_list(a.haystack), str_list(a.needle_kind))
    for task, length, depth, hay, kind in cells:
        for i in range(a.n):
            spec = GenSpec(
                task=task, length=length, depth=depth, haystack=hay, needle_kind=kind, seed=a.seed + i, corpus=a.corpus,
                phrasing=a.phrasing, n_needles=a.n_needles, n_distractors=a.n_distractors, hops=a.hops,
                direction=a.direction, answer_prefix=a.answer_prefix,
            )
            spec.validate()
            specs.append(spec)
    if not specs:
        raise UserError("nothing to generate: give at least one --task, --length and --depth")
    return specs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="YAML file whose keys are these flags (flags given here win)")
    add_spec_arguments(p)
    p.add_argument("--tokenizer", default="default", help="tokenizer: 'default' (embedded SmolLM2), a folder or a hub id")
    p.add_argument("--out", required=False, default=None, help="output JSONL file (written atomically)")
    p.add_argument("--allow-huge", action="store_true", help=f"allow lengths over {MAX_LENGTH} tokens (minutes and GBs each)")


def apply_config(a, parser) -> None:
    """Fill args from --config where the flag was left at its default."""
    if not getattr(a, "config", None):
        return
    data = load_yaml(a.config)
    actions = {act.dest: act for act in parser._actions}
    for key, value in data.items():
        dest = key.replace("-", "_")
        if not hasattr(a, dest):
            raise UserError(f"unknown key '{key}' in {a.config}: use the names of this command's flags")
        value = _typed(value, actions.get(dest), key, a.config)
        if getattr(a, dest) == parser.get_default(dest):
            setattr(a, dest, ",".join(map(str, value)) if isinstance(value, list) else value)


def _typed(value, action, key: str, path) -> object:
    """A YAML value checked against its flag's type at the edge: one line naming the key and the type it needs."""
    if action is None or value is None:
        return value
    kind = action.type
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UserError(f"config key '{key}' in {path} must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        name = "a whole number (int)" if kind is int else "a number (float)"
        bad = isinstance(value, (bool, list, dict)) or (kind is int and isinstance(value, float) and not value.is_integer())
        if not bad:
            try:
                return kind(value)
            except (TypeError, ValueError):
                bad = True
        raise UserError(f"config key '{key}' in {path} must be {name}, got {value!r}")
    if isinstance(value, bool) and action.choices is None and kind is None:
        raise UserError(f"config key '{key}' in {path} must be text or a list, got {value!r}")
    return value


def main(a) -> None:
    from ..models import load_tokenizer

    if not a.out:
        raise UserError("no output file: pass --out FILE.jsonl")
    specs = specs_from_args(a)
    tok = load_tokenizer(a.tokenizer)
    _warn_beyond_positions(a.tokenizer, max(s.length for s in specs))
    t0 = time.time()
    samples = generate_samples(specs, tok)
    if str(a.out).endswith(".json"):  # one sample as a JSON object: what `longrecall lift ingest --input` reads
        if len(samples) != 1:
            raise UserError(f"--out {a.out} (.json) holds one sample but {len(samples)} were asked for: use .jsonl or --n 1 with one cell")
        from ..io import write_json

        write_json(a.out, samples[0].to_dict())
        n = 1
    else:
        n = write_jsonl(a.out, (s.to_dict() for s in samples))
    lengths = sorted({s.prompt_tokens + s.answer_budget for s in samples})
    print(f"wrote {n} samples to {a.out} in {time.time() - t0:.1f}s (prompt + answer budget: {lengths[0]}..{lengths[-1]} tokens)")


def _warn_beyond_positions(model: str, longest: int) -> None:
    """One line when a length is beyond the positions the tokenizer's model was trained for (known from its folder)."""
    import json
    import sys
    from pathlib import Path

    from ..models import resolve

    try:
        cfg = json.loads((Path(resolve(model)) / "config.json").read_text())
    except (OSError, ValueError, UserError):
        return
    limit = cfg.get("max_position_embeddings")
    if isinstance(limit, int) and longest > limit:
        print(f"warning: length {longest} is beyond the {limit} positions of {model}: the model never saw such a "
              "position (evaluations mark these cells beyond_positions)", file=sys.stderr)


def families_main(a) -> None:
    for f in FAMILIES.values():
        print(f"{f.name:12s} {f.description}")


def add_attack_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=200, help="samples per family (default 200)")
    p.add_argument("--length", default="1k", help="sample length in tokens (default 1k)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--output", default=None, help="write the markdown table to this file (default: print it)")
    p.add_argument("--tokenizer", default="default")
    p.add_argument("--families", default=None, help=f"comma list of families to audit (default all: {', '.join(FAMILIES)})")


def attacks_main(a) -> None:
    from ..io import atomic_open
    from ..models import load_tokenizer
    from . import attacks as A

    if a.n < 1:
        raise UserError(f"--n {a.n}: pass at least 1 sample per family")
    (length,) = int_list(a.length)[:1] or [0]
    fams = [f.strip() for f in a.families.split(",") if f.strip()] if getattr(a, "families", None) else list(FAMILIES)
    for f in fams:
        get_family(f)  # an unknown name: one line listing the known ones
    tok = load_tokenizer(a.tokenizer)
    samples = A.audit_samples(tok, n=a.n, length=length, seed=a.seed, families=fams)
    table = A.markdown_table(A.attack_scores(samples, tok, seed=a.seed), fams)
    if a.output:
        with atomic_open(a.output) as f:
            f.write(table)
        print(f"wrote the attack table ({a.n} samples a family, {length} tokens) to {a.output}")
    else:
        print(table, end="")
