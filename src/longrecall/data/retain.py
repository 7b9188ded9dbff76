"""Retain records for a LIFT ingest: what the adapter must leave alone, so its gate learns when to stay shut.

A LIFT adapter trained only on one input learns to answer from memory for every query. Mixed into stage 2:
- `retain_context`: questions about *other* generated texts, asked with that text in context; the answer is the
  ground truth, which attention can read without the memory;
- `retain_chats`: ordinary chats with no context; the answer is the base model's own reply (made at ingest), so
  the adapter is trained to leave it unchanged;
- `retain_absent`: questions, in the input's own needle names, about keys the input never mentions; the answer
  says the memory does not hold it (a memorised value there is a false recall).

Pure and seeded, apart from the base model's replies, which come from a `reply(messages) -> str` function.
The chats here are training chats: `lift eval` asks other ones (longrecall.lift.evaluate.CHATS).
"""
from __future__ import annotations

import random
from typing import Callable

from ..errors import UserError

# Ordinary questions for retain training (disjoint from the evaluation chats in lift/evaluate.py).
TRAIN_CHATS = (
    "What is the largest ocean on Earth?", "How many legs does a spider have?", "Write a short greeting for a birthday card.",
    "What is the opposite of cold?", "Name three colours of the rainbow.", "What is 9 times 6?",
    "What do you call a baby dog?", "Give me a word that rhymes with cat.", "What season comes after winter?",
    "What is the boiling point of water in Celsius?", "Suggest a healthy breakfast.", "What language is spoken in Brazil?",
    "How many minutes are in an hour?", "Describe a rainy day in one sentence.", "What animal is known as the king of the jungle?",
    "What is the main ingredient of bread?", "Who wrote Romeo and Juliet?", "What shape has three sides?",
    "Give an example of a musical instrument.", "What is the freezing point of water in Fahrenheit?",
    "What do plants need to grow?", "Name a country in Africa.", "What is the past tense of run?",
    "How many continents are there?", "Tell me a fun fact about octopuses.", "What is the tallest animal?",
    "Which gas do humans breathe in to live?", "What is a synonym for quick?", "What is 100 divided by 4?",
    "What do you use to write on a blackboard?", "Name a vegetable that is orange.", "What is the capital of Japan?",
)
ABSENT_ANSWERS = ("I have no {name} for {key} in memory.", "The text I read does not mention {key}.",
                  "Nothing I read gives a {name} for {key}.")
CONTEXT_TASKS = ("single", "multikey", "multiquery")


def _record(rid: str, kind: str, messages: list[dict], completion: str) -> dict:
    return {"id": rid, "kind": kind, "prompt": messages, "completion": [{"role": "assistant", "content": completion}]}


def context_records(n: int, tokenizer, length: int, seed: int) -> list[dict]:
    """`n` questions about other generated texts, asked with the text (train phrasings, their own seeds)."""
    from ..niah import GenSpec, generate_sample
    from . import sft

    rng = random.Random(f"retain-context-{seed}")
    out = []
    for i in range(n):
        spec = GenSpec(task=CONTEXT_TASKS[i % len(CONTEXT_TASKS)], length=length, depth=round(rng.random(), 3),
                       haystack=rng.choice(["prose", "noise"]), seed=70_000 + seed * 1000 + i, phrasing="train")
        s = generate_sample(spec, tokenizer)
        view = sft.view_of(s)
        answer = sft.render(view, sft.pick_format(view, rng, 0.0))
        out.append(_record(f"retain-ctx-{i:04d}", "retain_context", s.messages(), answer))
    return out


def chat_records(n: int, reply: Callable[[list[dict]], str] | None) -> list[dict]:
    """`n` ordinary chats whose answer is the base model's own reply."""
    if n and reply is None:
        raise UserError("retain_chats needs the base model's replies: run `longrecall lift ingest` (it makes them) or set retain_chats: 0")
    if n > len(TRAIN_CHATS):
        raise UserError(f"retain_chats is {n}, but only {len(TRAIN_CHATS)} training chats exist: set retain_chats <= {len(TRAIN_CHATS)}")
    out = []
    for i, question in enumerate(TRAIN_CHATS[:n]):
        messages = [{"role": "user", "content": question}]
        out.append(_record(f"retain-chat-{i:04d}", "retain_chat", messages, reply(messages)))
    return out


def absent_records(n: int, names: list[str], text: str, seed: int) -> list[dict]:
    """`n` questions about keys that `text` never mentions, in the train phrasings, with an answer that says so."""
    from ..niah.needles import QUESTIONS_ONE, make_key, pool

    rng = random.Random(f"retain-absent-{seed}")
    names = names or ["special magic number"]
    out, used = [], set()
    while len(out) < n:
        key = make_key(rng)
        if key in text or key in used:
            continue
        used.add(key)
        name = rng.choice(names)
        question = rng.choice(pool(QUESTIONS_ONE, "train")).format(name=name, key=key)
        answer = rng.choice(ABSENT_ANSWERS).format(name=name, key=key)
        out.append(_record(f"retain-absent-{len(out):04d}", "retain_absent", [{"role": "user", "content": question}], answer))
    return out


RETAIN_KINDS = ("retain_context", "retain_chat", "retain_absent")
