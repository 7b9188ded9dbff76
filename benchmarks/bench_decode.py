"""Greedy decoding with the KV cache: prefill time and decode tokens/s of the embedded model at several lengths, and
what that makes of a scorecard's time.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_decode.py --lengths 1024,4096,16384 --new-tokens 32
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_decode.py --scorecard runs/scorecard/base   # + time split

Decoding is measured with `model.generate` (the path every evaluation uses), forced to run `--new-tokens` steps
(no early stop), minus the prefill measured on its own in the same process. With --scorecard DIR, each answered
sample's prompt length and answer length (re-tokenized) are priced with these rates (interpolated in length) to
split the scorecard's generation time into prefill and decode.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from bench_prefill import median_time  # benchmarks/ is on the path when a script here runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def measure(model, length: int, new_tokens: int, reps: int) -> dict:
    ids = torch.randint(200, 40_000, (1, length))
    with torch.no_grad():
        prefill = median_time(lambda: model(ids, use_cache=True), reps)
        gen = median_time(lambda: model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                           pad_token_id=0), reps)
    decode = max(1e-9, gen - prefill)
    return {"length": length, "prefill_s": round(prefill, 3), "prefill_tok_s": round(length / prefill, 1),
            "decode_tok_s": round(new_tokens / decode, 2), "ms_per_token": round(1000 * decode / new_tokens, 1)}


def split_scorecard(folder: Path, rates: list[dict], tok) -> dict:
    """Price each answered sample's prefill and decode with the measured rates (linear in length between points)."""
    rows = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines() if x.strip()]
    Ls = [r["length"] for r in rates]
    pre = lambda L: L / np.interp(L, Ls, [r["prefill_tok_s"] for r in rates])  # noqa: E731
    dec = lambda L: np.interp(L, Ls, [r["ms_per_token"] for r in rates]) / 1000  # noqa: E731
    p = d = measured = 0.0
    for r in rows:
        if r.get("answer") is None:
            continue
        n_out = len(tok(r["answer"], add_special_tokens=False)["input_ids"]) + 1
        p += pre(r["length"])
        d += n_out * dec(r["length"])
        measured += r.get("latency_s") or 0.0
    return {"samples": len(rows), "measured_generation_s": round(measured, 1), "priced_prefill_s": round(p, 1),
            "priced_decode_s": round(d, 1), "prefill_share": round(p / max(1e-9, p + d), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="1024,4096,16384")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--dtype", default="auto", help="auto (bf16 where native) | float32 | bfloat16")
    ap.add_argument("--scorecard", default=None, help="a scorecard folder whose time to split into prefill and decode")
    args = ap.parse_args()
    from longrecall.models import load_model, load_tokenizer, resolve_dtype

    dtype = resolve_dtype(args.dtype)
    model = load_model("default", dtype=dtype).eval()
    print(f"threads {torch.get_num_threads()}, dtype {dtype}, capability {torch.backends.cpu.get_cpu_capability()}")
    rates = []
    for L in (int(x) for x in args.lengths.split(",")):
        r = measure(model, L, args.new_tokens, args.reps)
        rates.append(r)
        print(json.dumps(r), flush=True)
    print("| length | prefill | prefill tokens/s | decode tokens/s | ms per new token |\n|---|---|---|---|---|")
    for r in rates:
        print(f"| {r['length']} | {r['prefill_s']} s | {r['prefill_tok_s']} | {r['decode_tok_s']} | {r['ms_per_token']} |")
    if args.scorecard:
        print(json.dumps(split_scorecard(Path(args.scorecard), rates, load_tokenizer("default"))))


if __name__ == "__main__":
    main()
