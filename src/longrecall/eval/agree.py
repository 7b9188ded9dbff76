"""`longrecall eval agree`: re-ask the samples of an Atropos `evaluate` run in-process and compare answers and scores.

    longrecall eval agree --env-samples runs/demo/env/samples.jsonl --model runs/demo/merged --output runs/demo/env/agreement.json

Each sample is regenerated from its id fields (task, length, depth, seed, phrasing, haystack) and must reproduce
the same id, so both paths see the very same prompt; the in-process backend then answers greedily.
"""
from __future__ import annotations

import ast
import json

from ..errors import UserError
from ..io import read_jsonl, write_json


def _spec_from_id(row: dict):
    from ..niah import GenSpec

    parts = row["id"].split("-")
    return GenSpec(task=row["task"], haystack=parts[1], needle_kind=parts[2], length=int(row["length"]),
                   depth=float(row["depth"]), seed=int(row["seed"]), phrasing=parts[-2])


def agree(env_samples: str, model: str, max_new_tokens: int | None = None) -> dict:
    from ..models import load_tokenizer
    from ..niah import generate_sample, score
    from .backends import HFBackend

    rows = read_jsonl(env_samples)
    if not rows:
        raise UserError(f"{env_samples} has no samples: run `longrecall env evaluate` first")
    tok = load_tokenizer(model)
    backend = HFBackend(model=model, dtype="float32")
    out = []
    for row in rows:
        s = generate_sample(_spec_from_id(row), tok)
        if s.id != row["id"]:
            raise UserError(f"could not regenerate sample {row['id']} (got {s.id}): the generator version differs from the run's")
        text = backend.generate([s], max_new_tokens or s.answer_budget)[0]
        env_score = float(row["score"])
        out.append({"id": s.id, "env_output": row["output"], "inprocess_output": text, "env_score": env_score,
                    "inprocess_score": score(s, text), "same_answer": text.strip() == str(row["output"]).strip(),
                    "answers": ast.literal_eval(row["answers"]) if isinstance(row["answers"], str) else row["answers"]})
    n = len(out)
    return {"samples": n, "same_score": sum(r["env_score"] == r["inprocess_score"] for r in out) / n,
            "same_answer": sum(r["same_answer"] for r in out) / n,
            "env_mean": sum(r["env_score"] for r in out) / n, "inprocess_mean": sum(r["inprocess_score"] for r in out) / n,
            "rows": out}


def add_arguments(p) -> None:
    p.add_argument("--env-samples", required=True, help="samples.jsonl written by `longrecall env evaluate`")
    p.add_argument("--model", required=True, help="the model folder the environment's server served")
    p.add_argument("--output", required=True, help="agreement JSON to write")


def main(a) -> None:
    r = agree(a.env_samples, a.model)
    write_json(a.output, r)
    print(f"{r['samples']} samples: same score {100 * r['same_score']:.0f}%, same answer text {100 * r['same_answer']:.0f}% "
          f"(env mean {r['env_mean']:.2f}, in-process mean {r['inprocess_mean']:.2f}); wrote {a.output}")
