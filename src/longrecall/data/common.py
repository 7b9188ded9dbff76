"""Shared pieces of the generator-made datasets: weighted mixes, seeded spec drawing, the record loop, manifests, cards.

    longrecall data sft --output-dir runs/data/sft --config configs/data-sft-cpu.yaml
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import random
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import __version__
from ..errors import UserError
from ..io import atomic_open
from ..niah.cli import apply_config, int_list  # noqa: F401 - apply_config is re-exported for the CLI's --config
from ..niah.families import FAMILIES, get_family
from ..niah.generate import GENERATOR_VERSION, GenSpec, Sample, generate_sample
from ..niah.haystacks import HAYSTACKS

NEEDLE_KINDS = ("number", "word", "uuid")
# Generator seeds of record i: seed * SEED_STRIDE + SPLIT_OFFSET[split] + i, so splits and seeds never share a haystack.
SEED_STRIDE = 1_000_000
SPLIT_OFFSET = {"train": 0, "eval": 500_000}
_MAX_REDRAWS = 8


def parse_weighted(value: Any, item: Callable[[str], Any] = str, what: str = "value") -> list[tuple[Any, float]]:
    """'a:3,b,c:0.5' or ['a:3', 'b'] or {'a': 3, 'b': 1} -> [(a, 3.0), (b, 1.0), (c, 0.5)] (weight 1 when left out)."""
    if isinstance(value, dict):
        parts = [(str(k), v) for k, v in value.items()]
    else:
        raw = value if isinstance(value, (list, tuple)) else str(value).split(",")
        parts = []
        for p in (str(x).strip() for x in raw):
            if p:
                name, _, w = p.partition(":")
                parts.append((name.strip(), w.strip() or 1))
    out = []
    for name, w in parts:
        try:
            weight = float(w)
        except (TypeError, ValueError):
            raise UserError(f"weight '{w}' of {what} '{name}' is not a number: write NAME:WEIGHT such as 2k:3") from None
        if weight < 0:
            raise UserError(f"weight {weight} of {what} '{name}' is negative: use 0 or more")
        out.append((item(name), weight))
    if not out or sum(w for _, w in out) <= 0:
        raise UserError(f"no {what} to draw from: give at least one with a positive weight")
    return out


def parse_count(text: Any) -> int:
    """'2M' -> 2097152, '512k' -> 524288, '1500' -> 1500."""
    return int_list(str(text))[0]


def weighted_choice(rng: random.Random, pairs: list[tuple[Any, float]]) -> Any:
    return rng.choices([p for p, _ in pairs], weights=[w for _, w in pairs], k=1)[0]


TRAIN_PHRASINGS = ("train", "grammar")
NAMED_CORPORA = ("stdlib", "pkgdocs")  # built-in real text: stdlib for training, pkgdocs held out for evaluation


@dataclass
class Mix:
    """The distribution records are drawn from; depths are uniform in [0, 1]; phrasings from the train pool, or the
    train pool grown by the grammar (never the held-out pool)."""

    tasks: list[tuple[str, float]]
    lengths: list[tuple[int, float]]
    haystacks: list[tuple[str, float]]
    needle_kinds: list[tuple[str, float]]
    corpus: str | None = None
    phrasing: str = "train"

    def as_dict(self) -> dict:
        axes = ("tasks", "lengths", "haystacks", "needle_kinds")
        return {k: [[a, w] for a, w in getattr(self, k)] for k in axes} | {"corpus": self.corpus, "phrasing": self.phrasing}


def _check(name: str, allowed, what: str) -> str:
    if name not in allowed:
        raise UserError(f"unknown {what} '{name}': use one of {', '.join(allowed)}")
    return name


def mix_from_args(a) -> Mix:
    """Validate the mix flags; haystack 'user' needs --corpus, and a corpus joins the default haystacks."""
    hay_default = "noise,prose,needles" + (",user" if a.corpus else "")
    mix = Mix(
        tasks=parse_weighted(a.tasks, lambda t: get_family(t).name, "task"),
        lengths=parse_weighted(a.lengths, lambda s: int_list(s)[0], "length"),
        haystacks=parse_weighted(a.haystacks or hay_default, lambda h: _check(h, HAYSTACKS, "haystack"), "haystack"),
        needle_kinds=parse_weighted(a.needle_kinds, lambda k: _check(k, NEEDLE_KINDS, "needle kind"), "needle kind"),
        corpus=a.corpus,
        phrasing=getattr(a, "phrasing", "train"),
    )
    if mix.phrasing not in TRAIN_PHRASINGS:
        raise UserError(f"phrasing '{mix.phrasing}' is not for training data: use {' or '.join(TRAIN_PHRASINGS)}")
    if any(h == "user" and w > 0 for h, w in mix.haystacks) and not a.corpus:
        raise UserError("haystack 'user' needs your text: pass --corpus FILE_OR_FOLDER or drop 'user' from --haystacks")
    if a.corpus == "pkgdocs":
        raise UserError("corpus pkgdocs is the scorecard's held-out real text: train on --corpus stdlib (Python's docstrings) "
                        "or your own text")
    if a.corpus and a.corpus not in NAMED_CORPORA and not Path(a.corpus).exists():
        raise UserError(f"corpus {a.corpus} does not exist: pass a .txt/.md/.jsonl file or a folder of them")
    for length, _ in mix.lengths:
        if length < 256:
            raise UserError(f"length {length} is too small for the task families: use 512 or more")
    return mix


def draw_spec(mix: Mix, seed: int, index: int, split: str = "train", label: str = "sft", attempt: int = 0) -> GenSpec:
    """The spec of record `index`: its own seeded draw, so any record can be made alone and in any order."""
    rng = random.Random(f"longrecall-{label}-{split}-{seed}-{index}-{attempt}")
    return GenSpec(
        task=weighted_choice(rng, mix.tasks),
        length=weighted_choice(rng, mix.lengths),
        depth=round(rng.random(), 3),
        haystack=weighted_choice(rng, mix.haystacks),
        needle_kind=weighted_choice(rng, mix.needle_kinds),
        seed=seed * SEED_STRIDE + SPLIT_OFFSET[split] + index + attempt * 100_003,
        corpus=mix.corpus,
        phrasing=mix.phrasing,  # train or grammar: the held-out pool is for evaluation only
    )


def add_mix_arguments(p: argparse.ArgumentParser, n: int = 2000) -> None:
    """The flags every generator-made dataset shares (YAML keys of --config are the same names)."""
    p.add_argument("--config", default=None, help="YAML file whose keys are these flags (flags given here win)")
    p.add_argument("--output-dir", default=None, help="folder for train.jsonl, eval.jsonl, manifest.json, README.md")
    p.add_argument("--n", type=int, default=n, help="training records")
    p.add_argument("--eval-n", type=int, default=0, help="held-out records (other seeds and haystacks) in eval.jsonl")
    p.add_argument("--tasks", default=",".join(FAMILIES), help="families with optional weights, e.g. all_needles:3,chain:3,single")
    p.add_argument("--lengths", default="512,1k,2k,4k,8k", help="target lengths with optional weights, e.g. 512:3,2k:2,8k:1")
    p.add_argument("--haystacks", default=None, help="noise,prose,needles (default; +user with --corpus), weights allowed")
    p.add_argument("--needle-kinds", default="number,word,uuid", help="needle value kinds, weights allowed")
    p.add_argument("--corpus", default=None, help="file or folder of .txt/.md/.jsonl for haystack 'user', or 'stdlib' (Python's "
                   "docstrings: real prose for training; 'pkgdocs' is the scorecard's held-out real text)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", default="default", help="'default' (embedded SmolLM2), a model folder or a hub id")
    p.add_argument("--phrasing", default="train", choices=TRAIN_PHRASINGS,
                   help="train: the fixed training phrasings; grammar: many more forms composed by niah/grammar.py")
    p.add_argument("--chain-of-hops", type=float, default=0.5, help="probability of a hop-by-hop answer for chain/vartrack")


def check_counts(a) -> Path:
    if not a.output_dir:
        raise UserError("no output folder: pass --output-dir DIR")
    if a.n < 1 or a.eval_n < 0:
        raise UserError(f"--n {a.n} / --eval-n {a.eval_n}: ask for at least one training record and no negative count")
    if max(a.n, a.eval_n) >= SPLIT_OFFSET["eval"]:
        raise UserError(f"at most {SPLIT_OFFSET['eval'] - 1} records per split: lower --n/--eval-n or use several seeds")
    return Path(a.output_dir)


def _rollouts_module():
    from ..env import rollouts

    return rollouts


def add_rollout_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    """The Atropos path's own flags (longrecall.env.rollouts.add_<kind>_arguments) in a group of this parser;
    its output positional becomes --output-dir/train.jsonl and flags this parser already has are shared."""
    try:
        add = getattr(_rollouts_module(), f"add_{kind}_arguments")
    except (ImportError, AttributeError):
        return  # no Atropos path installed: --via atropos says so when asked for
    theirs = argparse.ArgumentParser(add_help=False)
    add(theirs)
    group = p.add_argument_group("Atropos rollouts (--via atropos)")
    taken = {s for act in p._actions for s in act.option_strings}
    dests = {act.dest for act in p._actions}
    for act in theirs._actions:
        if act.option_strings and not set(act.option_strings) & taken and act.dest not in dests:
            group._add_action(act)  # what argparse's `parents=` does, for a parser that already exists


def rollouts(kind: str, a):
    """--via atropos: hand the parsed flags to longrecall.env.rollouts (imported only when asked for)."""
    try:
        R = _rollouts_module()
    except ImportError as e:
        raise UserError(f"--via atropos needs longrecall.env.rollouts, which cannot be imported ({e}): use --via direct") from None
    run = getattr(R, f"{kind}_main", None) or getattr(R, f"rollout_{kind}", None)
    if run is None:
        raise UserError(f"longrecall.env.rollouts has no {kind}_main: update it or use --via direct")
    if not a.output_dir:
        raise UserError("no output folder: pass --output-dir DIR")
    a.out = str(Path(a.output_dir) / "train.jsonl")
    return run(a)


def config_dict(a) -> dict:
    """The flags that decide the content (not where it goes), for the manifest."""
    skip = {"output_dir", "config", "via", "debug", "command", "subcommand"}
    kept = {k: v for k, v in vars(a).items() if not k.startswith("_") and k not in skip}
    return json.loads(json.dumps(kept, default=str))  # YAML mappings may mix int and str keys: make them all str


def tokenizer_name(tok) -> str:
    """The tokenizer's folder or hub name without the machine's path, so manifests match across machines."""
    return Path(str(getattr(tok, "name_or_path", ""))).name


def token_stats(values: list[int]) -> dict:
    if not values:
        return {}
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "total": sum(values)}


class TooLong(Exception):
    """Raised by a record maker whose answer runs `extra` tokens past the sample's length."""

    def __init__(self, extra: int):
        super().__init__(f"{extra} tokens too long")
        self.extra = extra


def generate_record(spec: GenSpec, tok, make: Callable[[Sample, random.Random], dict | None], label: str = "sft"):
    """(record, sample) for one spec; `make` gets the sample and an RNG seeded by the sample's id.

    An answer longer than the generator's answer budget (make raises TooLong) regenerates the same sample (same id,
    needles and question) with a budget that holds it, so every record fits its target length.
    """
    sample = generate_sample(spec, tok)
    for _ in range(3):
        try:
            return make(sample, random.Random(f"{label}-record-{sample.id}")), sample
        except TooLong as e:
            spec = dataclasses.replace(spec, answer_budget=sample.answer_budget + e.extra + 4)
            sample = generate_sample(spec, tok)
    return None, sample


def generate_with_redraw(mix: Mix, tok, seed: int, index: int, split: str, label: str, make: Callable):
    """Record `index` of a split and the number of redraws: a spec the generator cannot fit, or one `make`
    declines (returns None), is drawn again with the next seeded attempt."""
    err = None
    for attempt in range(_MAX_REDRAWS):
        try:
            record, _ = generate_record(draw_spec(mix, seed, index, split, label, attempt), tok, make, label)
        except UserError as e:  # e.g. 32 uuid needles asked of a 512-token prompt
            err = e
            continue
        if record is not None:
            return record, attempt
    raise err or UserError(f"record {index} of {split} could not be made in {_MAX_REDRAWS} draws: widen --lengths or --tasks")


@contextlib.contextmanager
def atomic_files(out_dir: Path, names: list[str]) -> Iterator[list]:
    """Temporary files for every output; all renamed into place together on success, all deleted on error."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_open(Path(out_dir) / n)) for n in names]


def build_records(out_dir: Path, label: str, make, mix: Mix, tok, n: int, eval_n: int, seed: int, config: dict, card) -> dict:
    """Write train.jsonl (+ eval.jsonl), manifest.json and README.md; `make(sample, rng)` gives a record with a `meta`."""
    from tqdm.auto import tqdm

    splits = [("train", n)] + ([("eval", eval_n)] if eval_n else [])
    names = [f"{s}.jsonl" for s, _ in splits] + ["manifest.json", "README.md"]
    manifest = {
        "kind": label, "seed": seed, "config": config, "mix": mix.as_dict(), "generator_version": GENERATOR_VERSION,
        "longrecall_version": __version__, "tokenizer": tokenizer_name(tok), "splits": {},
    }
    with atomic_files(out_dir, names) as files:
        for fh, (split, count) in zip(files, splits):
            counts: dict[str, Counter] = {k: Counter() for k in ("task", "length", "haystack", "needle_kind", "format", "rejection")}
            tokens, redraws = [], 0
            for i in tqdm(range(count), desc=f"{label} {split}", unit="rec"):
                record, attempt = generate_with_redraw(mix, tok, seed, i, split, label, make)
                redraws += attempt
                fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
                meta = record["meta"]
                for k, c in counts.items():
                    if k in meta:
                        c[str(meta[k])] += 1
                tokens.append(meta["tokens"])
            manifest["splits"][split] = {
                "records": count, "redrawn": redraws, "tokens": token_stats(tokens),
                "counts": {k: dict(sorted(c.items())) for k, c in counts.items() if c},
            }
        files[-2].write(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        files[-1].write(card(manifest))
    if not eval_n:  # a stale eval split from an earlier run would contradict the manifest
        (Path(out_dir) / "eval.jsonl").unlink(missing_ok=True)
    return manifest


def counts_table(manifest: dict) -> str:
    """Markdown lines: records and token statistics per split, then the counts per axis."""
    lines = []
    for split, s in manifest["splits"].items():
        t = s["tokens"]
        lines.append(f"- **{split}**: {s['records']} records, tokens min {t.get('min')} / median {t.get('median')} / max {t.get('max')}")
        for axis, c in s["counts"].items():
            lines.append(f"  - {axis}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    return "\n".join(lines)


def load_snippet(out_dir_name: str, files: str = '{"train": "train.jsonl"}') -> str:
    return (
        "```python\nfrom datasets import load_dataset\n"
        f"ds = load_dataset(\"json\", data_files={files})  # paths relative to {out_dir_name}/\n```"
    )


def render_card(template: str, manifest: dict) -> str:
    """A dataset card from its template: the manifest's fields, how to load the files, the counts table."""
    files = '{"train": "train.jsonl"' + (', "eval": "eval.jsonl"}' if "eval" in manifest["splits"] else "}")
    return template.format(**manifest, load=load_snippet("this folder", files), counts=counts_table(manifest))
