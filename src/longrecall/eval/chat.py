"""`longrecall eval chat`: does a tuned model still answer ordinary questions as well as the base model?

    longrecall eval chat --model default --adapter runs/cpu/train/adapter --output-dir runs/chat/tuned
    longrecall eval chat --compare runs/chat/base runs/chat/tuned --output-dir runs/chat/compare

The check is 48 everyday questions with no context, each with a short answer that can be checked by string
containment ("What is the capital of France?" -> Paris). Why this check: a judge model on a 2-core CPU would be
slower than the model it judges and its verdicts noisy; closed-form questions make "as good as the base" an
objective, paired claim. Its blind spot: it scores knowledge and instruction following in one sentence, not style
or long answers, so `answers.jsonl` keeps every answer for reading, and the agreement rate (identical answers to
the base's) is reported beside the accuracy. The questions are general knowledge, disjoint from every training
set of longrecall (no needle, no haystack) and from LIFT's retain chats.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ..errors import UserError

# (question, accepted answers: any one, case-insensitive, as a whole word or phrase)
QUESTIONS = (
    ("What is the capital of France?", ["paris"]), ("What is the capital of Italy?", ["rome"]),
    ("What is the capital of Germany?", ["berlin"]), ("What is the capital of Spain?", ["madrid"]),
    ("What is the capital of the United Kingdom?", ["london"]), ("What is the capital of Canada?", ["ottawa"]),
    ("How many days are there in a week?", ["seven", "7"]), ("How many hours are there in a day?", ["24", "twenty-four"]),
    ("How many months are there in a year?", ["twelve", "12"]), ("What is 2 plus 2?", ["four", "4"]),
    ("What is 5 times 3?", ["fifteen", "15"]), ("What is 10 minus 4?", ["six", "6"]),
    ("What colour is the sky on a clear day?", ["blue"]), ("What colour is grass?", ["green"]),
    ("What colour is snow?", ["white"]), ("What do bees make?", ["honey"]),
    ("What drink do cows give us?", ["milk"]), ("Which planet do we live on?", ["earth"]),
    ("Which planet is known as the Red Planet?", ["mars"]), ("What is the largest planet in the solar system?", ["jupiter"]),
    ("What star is at the centre of our solar system?", ["sun"]), ("What is frozen water called?", ["ice"]),
    ("What gas do plants absorb from the air?", ["carbon dioxide", "co2"]),
    ("What is the chemical symbol for water?", ["h2o", "h₂o"]), ("How many legs does a dog have?", ["four", "4"]),
    ("How many wheels does a bicycle have?", ["two", "2"]), ("What is the opposite of hot?", ["cold"]),
    ("What is the opposite of up?", ["down"]), ("What is the opposite of day?", ["night"]),
    ("What animal says moo?", ["cow"]), ("What animal barks?", ["dog"]), ("What is a baby cat called?", ["kitten"]),
    ("What fruit is yellow and curved?", ["banana"]), ("What do you call a house made of ice?", ["igloo"]),
    ("Which ocean lies between Europe and America?", ["atlantic"]), ("What is the longest river in Africa?", ["nile"]),
    ("On which continent is Egypt?", ["africa"]), ("On which continent is Brazil?", ["south america"]),
    ("What language is mainly spoken in France?", ["french"]), ("What language is mainly spoken in Mexico?", ["spanish"]),
    ("Who painted the Mona Lisa?", ["leonardo", "da vinci"]), ("Who wrote Hamlet?", ["shakespeare"]),
    ("What is the last letter of the English alphabet?", ["z"]), ("How many sides does a square have?", ["four", "4"]),
    ("How many sides does a triangle have?", ["three", "3"]), ("What is the freezing point of water in Celsius?", ["0", "zero"]),
    ("What do we call the season after summer?", ["autumn", "fall"]), ("Which organ pumps blood through the body?", ["heart"]),
)


def correct(answer: str, accepted: list[str]) -> bool:
    text = answer.lower()
    return any(re.search(rf"(?<![a-z0-9]){re.escape(a)}(?![a-z0-9])", text) for a in accepted)


def run(backend, out: Path, max_new_tokens: int = 40) -> dict:
    from ..eval.stats import summarize
    from ..io import write_json, write_jsonl

    prompts = [[{"role": "user", "content": q}] for q, _ in QUESTIONS]
    answers = backend.generate(prompts, max_new_tokens)
    rows = [{"id": f"chat-{i:02d}", "question": q, "accepted": acc, "answer": a, "score": float(correct(a, acc))}
            for i, ((q, acc), a) in enumerate(zip(QUESTIONS, answers))]
    write_jsonl(out / "answers.jsonl", rows)
    summary = {"backend": backend.name, "questions": len(rows), "accuracy": summarize([r["score"] for r in rows])}
    write_json(out / "chat.json", summary)
    return summary


def compare(a_dir: Path, b_dir: Path, out: Path) -> dict:
    from ..eval.stats import paired
    from ..io import write_json

    def load(d: Path) -> dict[str, dict]:
        f = d / "answers.jsonl"
        if not f.exists():
            raise UserError(f"{f} does not exist: run `longrecall eval chat --output-dir {d}` first")
        return {r["id"]: r for r in map(json.loads, f.read_text().splitlines())}

    a, b = load(a_dir), load(b_dir)
    delta = paired({k: r["score"] for k, r in a.items()}, {k: r["score"] for k, r in b.items()})
    same = sum(a[k]["answer"] == b[k]["answer"] for k in a.keys() & b.keys())
    result = {"a": str(a_dir), "b": str(b_dir), "delta": delta, "identical_answers": same, "questions": len(a.keys() & b.keys())}
    write_json(out / "compare.json", result)
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="HF id, local folder, or 'default' (embedded SmolLM2-135M)")
    p.add_argument("--adapter", default=None, help="peft adapter folder written by `longrecall train`")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"], help="auto: bf16 where native")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None, help="two output folders: B − A, paired")
    p.add_argument("--output-dir", required=True, help="where answers.jsonl and chat.json (or compare.json) go")


def main(a: argparse.Namespace) -> int:
    out = Path(a.output_dir)
    if a.compare:
        r = compare(Path(a.compare[0]), Path(a.compare[1]), out)
        d = r["delta"]
        print(f"B − A: {d['mean']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] points over {d['n']} questions; "
              f"{r['identical_answers']} identical answers")
        return 0
    from .backends import HFBackend

    s = run(HFBackend(a.model, a.adapter, dtype=a.dtype), out, a.max_new_tokens)
    acc = s["accuracy"]
    print(f"{s['backend']}: {acc['mean']:.1f} [{acc['lo']:.1f}, {acc['hi']:.1f}] on {s['questions']} questions -> {out}")
    return 0
