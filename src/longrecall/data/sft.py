"""SFT chat records made from the generator's ground truth, with varied answer formats (TRL `messages` format).

    longrecall data sft --output-dir runs/data/sft --config configs/data-sft-cpu.yaml

Each record is system + user (the generator's prompt, train phrasing pool only) + an assistant turn that states the
answer in one of several formats: bare value, sentence, "key: value", lists, or a hop-by-hop walk for chains. Every
assistant turn is checked to score 1.0 with `niah.score` and to fit the sample's target length.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..niah import needles as N
from ..niah.chains import TYPES, WHERE
from ..niah.generate import Sample
from ..niah.scoring import score
from ..niah.tokens import count
from . import common as C
from .common import apply_config  # noqa: F401 - the CLI calls <module>.apply_config for --config


@dataclass
class View:
    """What an answer format needs; DPO builds rejected answers by changing a view and rendering the same format."""

    shape: str  # one | values | pairs | path | vars | answer
    values: list[str]  # the answer values (document order for lists, question order for pairs)
    name: str = ""  # the needle's name ("secret code"), when the family has one
    key: str = ""
    keys: list[str] = field(default_factory=list)  # pairs: the key of each value
    path: list[str] = field(default_factory=list)  # path: labels from the question's start to the answer; vars: [the value]
    facts: list[str] = field(default_factory=list)  # the fact sentences along the path, in reasoning order
    raw: list[str] = field(default_factory=list)  # path: the bare entities behind the labels ("4821" for "locker 4821")


def _and(xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + f" and {xs[-1]}"


def _names(v: View, n: int) -> str:
    return v.name if n == 1 else N.plural(v.name)


def _arrow(v: View) -> str:
    if v.shape == "vars":  # the walk is rebuilt from the values, so a changed value list changes the walk too
        walk = " → ".join([v.path[0]] + [f"VAR {x}" for x in v.values])
        return f"Following the assignments: {walk}, so the variables are {_and(v.values)}."
    lead = "Following the assignments" if v.path[0].startswith("VAR ") else "Following the facts"
    return f"{lead}: {' → '.join(v.path)}, so the answer is {v.path[-1]}."


FORMATS = {
    "one": {
        "bare": lambda v: v.values[0],
        "sentence": lambda v: f"The {v.name} for {v.key} is {v.values[0]}." if v.name else f"The answer is {v.values[0]}.",
        "kv": lambda v: f"{v.key}: {v.values[0]}",
        "short": lambda v: f"It is {v.values[0]}.",
    },
    "values": {
        "bullets": lambda v: "\n".join(f"- {x}" for x in v.values),
        "numbered": lambda v: "\n".join(f"{i}. {x}" for i, x in enumerate(v.values, 1)),
        "comma": lambda v: ", ".join(v.values),
        "sentence": lambda v: (
            f"The {_names(v, len(v.values))} for {v.key} {'are' if len(v.values) > 1 else 'is'} {_and(v.values)}." if v.key
            else f"I found {len(v.values)} {_names(v, len(v.values))}: {_and(v.values)}." if v.name
            else f"The answer is {_and(v.values)}."
        ),
    },
    "pairs": {
        "lines": lambda v: "\n".join(f"{k}: {x}" for k, x in zip(v.keys, v.values)),
        "bullets": lambda v: "\n".join(f"- {k}: {x}" for k, x in zip(v.keys, v.values)),
        "sentence": lambda v: "For " + _and(
            [f"{v.keys[0]} the {v.name or 'answer'} is {v.values[0]}"] + [f"for {k} it is {x}" for k, x in zip(v.keys[1:], v.values[1:])]
        ) + ".",
    },
    "answer": {  # one answer with no needle name or key to state (the story families)
        "bare": lambda v: v.values[0],
        "short": lambda v: f"It is {v.values[0]}.",
        "sentence": lambda v: f"The answer is {v.values[0]}.",
    },
    "path": {
        "bare": lambda v: v.values[0],
        "short": lambda v: f"The answer is {v.path[-1]}.",
        "arrow": _arrow,
        "facts": lambda v: f"Following the facts: {' '.join(v.facts)} So the answer is {v.path[-1]}.",
    },
    "vars": {
        "comma": lambda v: ", ".join(v.values),
        "bullets": lambda v: "\n".join(f"- VAR {x}" for x in v.values),
        "arrow": _arrow,
    },
}
HOP_FORMATS = {"arrow", "facts"}  # drawn with probability --chain-of-hops, for chain and vartrack


def needle_name(nd: dict) -> str:
    """The needle's name ('secret code'), found by re-forming its sentence from the known templates; '' if none fits."""
    names = [x for pair in N.NAMES.values() for x in N.pool(pair, "grammar") + list(pair[1]) if x in nd["text"]]
    for name in sorted(names, key=len, reverse=True):  # 'secret code' before 'code'
        for tmpl in N.pool(N.NEEDLE_TEMPLATES, "grammar") + N.NEEDLE_TEMPLATES[1]:
            if N.needle_sentence(tmpl, name, nd["key"], nd["value"]) == nd["text"]:
                return name
    return ""


def _groups(needles: list[dict], size: int) -> list[list[dict]]:
    return [needles[i: i + size] for i in range(0, len(needles), size)]


def chain_views(s: Sample) -> tuple[View, list[View]]:
    """The target chain's view and one view per distractor chain, each walked from the question's start."""
    targets = [n for n in s.needles if n["role"] == "target"]
    distractors = [n for n in s.needles if n["role"] == "distractor"]
    size = len(targets)
    if s.task == "chain":
        backward = s.answers[0] == targets[0]["key"]

        def walk(group):
            labels = [group[0]["key"]] + [WHERE[TYPES[h + 1]].format(x=n["value"]) for h, n in enumerate(group)]
            raw = [group[0]["key"]] + [n["value"] for n in group]
            facts = [n["text"] for n in group]
            if backward:
                labels, raw, facts = labels[::-1], raw[::-1], facts[::-1]
            return View("path", [raw[-1]], path=labels, facts=facts, raw=raw)
    else:  # vartrack: VAR v0 = value, VAR v1 = VAR v0, ...; asked from the last name back to the value
        def walk(group):
            names = [group[0]["key"]] + [n["key"] for n in group[1:]]
            raw = names[::-1] + [group[0]["value"]]
            labels = [f"VAR {x}" for x in names[::-1]] + [group[0]["value"]]
            return View("path", [raw[-1]], path=labels, facts=[n["text"] for n in reversed(group)], raw=raw)
    return walk(targets), [walk(g) for g in _groups(distractors, size) if len(g) == size]


STORY_TASKS = ("nonliteral", "kvlines", "category", "narrative")


def story_view(s: Sample) -> View:
    """The newer families: a two-hop non-literal needle walks person -> place -> district; a category lists the
    visited cities in document order; the others have one answer and no needle name to state."""
    targets = sorted((n for n in s.needles if n["role"] == "target"), key=lambda n: n["token_offset"])
    if s.metric == "chain":  # nonliteral, 2 hops: chain = [place, district]
        place, district = s.chain
        put = next(n for n in targets if n["value"] == place)
        where = next(n for n in targets if n["value"] == district)
        return View("path", [district], path=[put["key"], f"the {place}", district], facts=[put["text"], where["text"]],
                    raw=[put["key"], place, district])
    if s.task == "category":
        return View("values", [n["value"] for n in targets])
    return View("answer", list(s.answers), key=targets[0]["key"])


def view_of(s: Sample) -> View:
    if s.task in STORY_TASKS:
        return story_view(s)
    targets = [n for n in s.needles if n["role"] == "target"]
    in_doc = sorted(targets, key=lambda n: n["token_offset"])
    if s.metric == "chain":
        return chain_views(s)[0]
    if s.task == "vartrack":  # forward: every variable that ends up holding the value
        value = targets[0]["value"]
        return View("vars", list(s.answers), path=[value])
    name = needle_name(targets[0])
    if s.task in ("single", "multikey"):
        return View("one", list(s.answers), name=name, key=targets[0]["key"])
    if s.task == "multiquery":
        return View("pairs", [n["value"] for n in targets], name=name, keys=[n["key"] for n in targets])
    key = targets[0]["key"] if s.task == "multivalue" else ""
    return View("values", [n["value"] for n in in_doc], name=name, key=key)


def pick_format(view: View, rng: random.Random, hops_p: float) -> str:
    names = list(FORMATS[view.shape])
    hops = [f for f in names if f in HOP_FORMATS]
    if hops and rng.random() < hops_p:
        return rng.choice(hops)
    return rng.choice([f for f in names if f not in HOP_FORMATS])


def render(view: View, fmt: str) -> str:
    return FORMATS[view.shape][fmt](view)


def chat_tokens(tok, messages: list[dict]) -> int:
    """Tokens of the whole chat as the chat template renders it for training."""
    text = tok.apply_chat_template(messages, tokenize=False)
    return count(tok, text if isinstance(text, str) else text[0])


def base_meta(s: Sample) -> dict:
    return {
        "id": s.id, "task": s.task, "length": s.length, "depth": float(s.depth), "haystack": s.haystack,
        "needle_kind": s.needle_kind, "seed": s.seed, "answers": list(s.answers), "metric": s.metric,
        "chain": list(s.chain), "value_kind": s.value_kind, "prompt_tokens": s.prompt_tokens,
    }


def fitted_tokens(s: Sample, tok, text: str) -> int:
    """Tokens of the chat with `text` as the answer; C.TooLong when it runs past the sample's length."""
    total = chat_tokens(tok, s.messages() + [{"role": "assistant", "content": text}])
    if total > s.length:
        raise C.TooLong(total - s.length)
    return total


def sft_record(s: Sample, tok, rng: random.Random, hops_p: float = 0.5) -> dict:
    """One chat record: the sample's prompt and a ground-truth assistant turn in a drawn format."""
    view = view_of(s)
    fmt = pick_format(view, rng, hops_p)
    text = render(view, fmt)
    if score(s, text) < 1.0:  # a format that loses credit would teach the wrong thing: a bug, never data
        raise AssertionError(f"format {fmt} of {s.id} scores {score(s, text)}: {text!r}")
    total = fitted_tokens(s, tok, text)
    meta = base_meta(s) | {"format": fmt, "tokens": total}
    return {"messages": s.messages() + [{"role": "assistant", "content": text}], "meta": meta}


CARD = """# longrecall SFT: needle-in-a-haystack recall chats

Supervised fine-tuning records made by `longrecall data sft` (longrecall {longrecall_version}, generator version
{generator_version}, tokenizer `{tokenizer}`, seed {seed}). Each prompt is a long document with facts ("needles")
inserted at uniform depths, then a question; the assistant turn is the generator's ground truth, stated in a varied
format (bare value, sentence, `key: value`, bullet or numbered lists, or a hop-by-hop walk for chains). Only the
generator's `train` phrasing pool is used: its held-out phrasings stay unseen for evaluation.

## Format
One JSON object per line: `messages` (system, user, assistant; TRL's conversational format) and `meta` (id, task,
length, depth, haystack, needle_kind, seed, answers, metric, chain, format, prompt_tokens, tokens = the whole chat
in tokens of the tokenizer above). `eval.jsonl`, when present, uses other seeds, so other haystacks and needles.

**Train with the loss on the assistant turn only.** `longrecall train longlora --sft train.jsonl` masks the
prompt itself. With TRL's `SFTTrainer`, map each row to `{{"prompt": messages[:-1], "completion": messages[-1:]}}`
(TRL then computes the loss on the completion only); `SFTConfig(assistant_only_loss=True)` works only with a chat
template that has `{{% generation %}}` markers, and TRL 1.16 cannot add them to SmolLM2's ChatML template.

{load}

## Contents
{counts}
"""


def card(manifest: dict) -> str:
    return C.render_card(CARD, manifest)


def add_arguments(p) -> None:
    C.add_mix_arguments(p, n=2000)
    p.add_argument("--via", default="direct", choices=["direct", "atropos"], help="direct from the generator, or Atropos rollouts")
    C.add_rollout_arguments(p, "sft")


def main(a) -> dict | None:
    if a.via == "atropos":
        return C.rollouts("sft", a)
    from ..models import load_tokenizer

    out = C.check_counts(a)
    mix = C.mix_from_args(a)
    tok = load_tokenizer(a.tokenizer)
    make = lambda s, rng: sft_record(s, tok, rng, a.chain_of_hops)  # noqa: E731
    m = C.build_records(out, "sft", make, mix, tok, a.n, a.eval_n, a.seed, C.config_dict(a), card)
    t = m["splits"]["train"]["tokens"]
    print(f"wrote {a.n} SFT records to {out}/train.jsonl (tokens {t['min']}..{t['max']}, median {t['median']})")
    return m
