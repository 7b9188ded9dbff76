"""DPO preference pairs from the generator: the ground truth against a hard negative taken from the sample itself.

    longrecall data dpo --output-dir runs/data/dpo --config configs/data-sft-cpu.yaml

Rejected answers: a distractor needle's value, a chain walked one hop short or along a distractor chain, a list with
one value missing, swapped for a distractor or for an invented one, a near-miss value. The rejected answer uses the
chosen answer's format, so the pair differs in content only, and it must score lower than the chosen one with
`niah.score`. Records follow TRL's conversational preference format: prompt, chosen and rejected message lists.
"""
from __future__ import annotations

import random
import string
from dataclasses import replace

from ..niah import needles as N
from ..niah.generate import Sample
from ..niah.lexicon import DISTRICTS
from ..niah.scoring import candidates, normalize, score
from . import common as C
from .common import apply_config  # noqa: F401 - the CLI calls <module>.apply_config for --config
from .sft import View, base_meta, chain_views, fitted_tokens, pick_format, render, view_of


def invented(kind: str, rng: random.Random, avoid: set[str]) -> str | None:
    """A value of the same shape that appears nowhere in the sample."""
    for _ in range(1000):
        if kind in ("number", "word", "uuid"):
            v = N.make_value(kind, rng)
        elif kind == "var":
            v = "".join(rng.choice(string.ascii_uppercase) for _ in range(5))
        else:
            return None
        if normalize(v) not in avoid:
            return v
    return None


def near_miss(value: str, kind: str, rng: random.Random, avoid: set[str]) -> str | None:
    """One digit or hex character changed (another word for words): wrong, but close to the truth."""
    if kind == "word":
        return invented(kind, rng, avoid)
    if kind not in ("number", "uuid"):
        return None
    alphabet = string.digits if kind == "number" else "0123456789abcdef"
    spots = [i for i, ch in enumerate(value) if ch in alphabet and i > 0 and not (kind == "uuid" and i == 14)]
    for _ in range(100):
        i = rng.choice(spots)
        v = value[:i] + rng.choice(alphabet.replace(value[i], "")) + value[i + 1:]
        if normalize(v) not in avoid:
            return v
    return None


def _swap(values: list[str], rng: random.Random, new: str) -> list[str]:
    out = list(values)
    out[rng.randrange(len(out))] = new
    return out


def rejected_views(s: Sample, view: View, rng: random.Random) -> dict[str, View]:
    """Every applicable hard negative for this sample, by kind."""
    answers = {normalize(a) for a in s.answers}
    avoid = answers | {normalize(n["value"]) for n in s.needles} | {normalize(n["key"]) for n in s.needles}
    kind = s.value_kind
    dis = sorted({n["value"] for n in s.needles if n["role"] == "distractor" and normalize(n["value"]) not in answers})
    out: dict[str, View] = {}
    if view.shape == "answer":  # story families: another place, record value or district of the text
        if dis:
            out["distractor"] = replace(view, values=[rng.choice(dis)])
        if s.task == "narrative":  # where the object was picked up: the fact before it was carried away
            out["stale"] = replace(view, values=[min((n for n in s.needles if n["role"] == "target"), key=lambda n: n["token_offset"])["value"]])
        v = near_miss(view.values[0], kind, rng, avoid)
        if v:
            out["near_miss"] = replace(view, values=[v])
    elif view.shape == "one":
        # Values of the same shape elsewhere in the text (needle-dense haystacks) count as distractors too.
        near = sorted(c for c in candidates(s.context, kind) if normalize(c) not in answers)
        if dis or near:
            out["distractor"] = replace(view, values=[rng.choice(dis or near)])
        v = near_miss(view.values[0], kind, rng, avoid)
        if v:
            out["near_miss"] = replace(view, values=[v])
    elif view.shape in ("values", "pairs", "vars"):
        if len(view.values) >= 2:
            drop = rng.randrange(len(view.values))
            keep = lambda xs: [x for i, x in enumerate(xs) if i != drop]  # noqa: E731
            out["missing"] = replace(view, values=keep(view.values), keys=keep(view.keys) if view.keys else [])
        if view.shape == "vars":
            dvars = sorted({n["key"] for n in s.needles if n["role"] == "distractor"})
            if dvars:
                out["distractor"] = replace(view, values=_swap(view.values, rng, rng.choice(dvars)))
        else:
            if dis:
                out["distractor"] = replace(view, values=_swap(view.values, rng, rng.choice(dis)))
            v = invented(kind, rng, avoid)
            if v:
                out["invented"] = replace(view, values=_swap(view.values, rng, v))
    elif view.shape == "path":
        if len(view.path) >= 3:  # the walk stops at the hop before the answer
            out["early_stop"] = replace(view, values=[view.raw[-2]], path=view.path[:-1], facts=view.facts[:-1], raw=view.raw[:-1])
        if s.task in ("chain", "vartrack"):
            others = [d for d in chain_views(s)[1] if normalize(d.values[0]) not in answers]
        else:  # a two-hop non-literal needle: another place's district
            districts = set(DISTRICTS[0]) | set(DISTRICTS[1])
            others = [replace(view, values=[d], path=view.path[:-1] + [d], raw=view.raw[:-1] + [d]) for d in dis if d in districts]
        if others:
            out["distractor"] = rng.choice(others)
    return out


def dpo_record(s: Sample, tok, rng: random.Random, hops_p: float = 0.5) -> dict | None:
    """One preference pair, or None when no negative scores below the truth (the caller redraws)."""
    view = view_of(s)
    prompt = s.messages()
    options = rejected_views(s, view, rng)
    kinds = sorted(options)
    rng.shuffle(kinds)
    fmt = pick_format(view, rng, hops_p)
    chosen = render(view, fmt)
    good = score(s, chosen)
    for kind in kinds:
        rejected = render(options[kind], fmt)
        bad = score(s, rejected)
        if bad < good and normalize(rejected) != normalize(chosen):
            total, rejected_total = fitted_tokens(s, tok, chosen), fitted_tokens(s, tok, rejected)
            meta = base_meta(s) | {
                "format": fmt, "rejection": kind, "chosen_score": good, "rejected_score": round(bad, 4), "tokens": total,
                "rejected_tokens": rejected_total,
            }
            return {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "meta": meta,
            }
    return None


CARD = """# longrecall DPO: recall preference pairs with hard negatives

Preference pairs made by `longrecall data dpo` (longrecall {longrecall_version}, generator version
{generator_version}, tokenizer `{tokenizer}`, seed {seed}). The prompt is a long document with facts ("needles")
at uniform depths and a question (the generator's `train` phrasings only). `chosen` is the ground truth in a varied
format; `rejected` is the same format holding a hard negative taken from the sample itself:

- `distractor`: a distractor needle's value (multikey), a value of the same shape elsewhere in the text, a
  distractor chain's end, or a list with one value swapped for a distractor's;
- `early_stop`: a chain walked one hop short (the answer is an intermediate hop);
- `missing` / `invented`: a list with one value left out, or swapped for a value that is nowhere in the text;
- `near_miss`: the value with one digit or character changed.

Every rejected answer scores lower than the chosen one with `longrecall.niah.score` (both scores are in `meta`).

## Format
TRL's conversational preference format, one JSON object per line: `prompt` (system + user messages), `chosen` and
`rejected` (one assistant message each), and `meta` (id, task, length, depth, haystack, needle_kind, answers,
format, rejection, chosen_score, rejected_score, tokens = prompt + chosen in tokens). `trl.DPOTrainer` reads the
three message columns directly.

{load}

## Contents
{counts}
"""


def card(manifest: dict) -> str:
    return C.render_card(CARD, manifest)


def add_arguments(p) -> None:
    C.add_mix_arguments(p, n=1000)
    p.add_argument("--via", default="direct", choices=["direct", "atropos"], help="direct from the generator, or Atropos rollouts")
    C.add_rollout_arguments(p, "dpo")


def main(a) -> dict | None:
    if a.via == "atropos":
        return C.rollouts("dpo", a)
    from ..models import load_tokenizer

    out = C.check_counts(a)
    mix = C.mix_from_args(a)
    tok = load_tokenizer(a.tokenizer)
    make = lambda s, rng: dpo_record(s, tok, rng, a.chain_of_hops)  # noqa: E731
    m = C.build_records(out, "dpo", make, mix, tok, a.n, a.eval_n, a.seed, C.config_dict(a), card)
    kinds = m["splits"]["train"]["counts"].get("rejection", {})
    print(f"wrote {a.n} DPO pairs to {out}/train.jsonl (rejections: {', '.join(f'{k} {v}' for k, v in kinds.items())})")
    return m
