"""What position scaling costs before any training: answer loss of the base model on SFT chats with native RoPE,
linear interpolation and YaRN (same model, same samples, one process).

    python benchmarks/bench_position_scaling.py --sft runs/cpu/data/sft/train.jsonl --target 16384 --n 6

Measured here it decided the cpu preset: linear x2 multiplied SmolLM2's answer loss by ~5 while YaRN barely moved it,
and 25 steps of LoRA+ did not bring the linear model back.
"""
from __future__ import annotations

import argparse
import json

import torch

from longrecall.models import load_model, load_tokenizer
from longrecall.train.positions import apply_position_scaling
from longrecall.train.recipe import chat_example


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sft", required=True, help="SFT JSONL from `longrecall data sft`")
    ap.add_argument("--target", type=int, default=16384)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--max-length", type=int, default=1024)
    a = ap.parse_args()
    tok = load_tokenizer("default")
    rows = [json.loads(line) for line in open(a.sft)]
    rows = [r for r in rows if r["meta"]["length"] <= a.max_length][: a.n]
    examples = [chat_example(tok, r["messages"], 4 * a.max_length) for r in rows]
    base = None
    print(f"{'scaling':>8} {'mean answer loss':>17} {'x native':>9}")
    for method in ["none", "linear", "yarn"]:
        model = load_model("default", dtype="bfloat16").eval()
        if method != "none":
            apply_position_scaling(model, a.target, method=method)
        with torch.no_grad():
            losses = [model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss.item() for e in examples]
        mean = sum(losses) / len(losses)
        base = base or mean
        print(f"{method:>8} {mean:>17.3f} {mean / base:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
