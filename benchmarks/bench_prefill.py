"""Prompt processing (prefill) speed of the embedded model on CPU, as a fraction of a bf16 matmul measured in the same process.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_prefill.py --tokens 4096 --reps 3 [--options bf16,autocast,fp32] [--compile]

FLOPs counted: 2 × (decoder matmul parameters) × tokens, + 2 × (output head) for the one position whose logits a
prefill needs, + causal attention 2 × tokens² × (heads × head_dim) × layers (QKᵀ and PV over the lower triangle).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def median_time(fn, reps: int) -> float:
    fn()  # warm-up: oneDNN primitive creation, allocator
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(reps: int, n: int = 4096) -> float:
    a = torch.randn(n, n).bfloat16()
    b = torch.randn(n, n).bfloat16()
    return 2 * n**3 / median_time(lambda: torch.matmul(a, b), reps) / 1e9


def prefill_flops(model, tokens: int) -> tuple[float, dict]:
    cfg = model.config
    decoder = sum(m.weight.numel() for n, m in model.model.named_modules() if isinstance(m, torch.nn.Linear))
    head = model.get_output_embeddings().weight.numel()
    heads_dim = cfg.num_attention_heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    parts = {"linear": 2 * decoder * tokens, "head": 2 * head, "attention": 2 * tokens**2 * heads_dim * cfg.num_hidden_layers}
    return float(sum(parts.values())), parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--options", default="bf16,autocast", help="comma list of bf16 (bf16 weights), autocast (fp32 weights + bf16 autocast), fp32")
    ap.add_argument("--compile", action="store_true", help="also try torch.compile on the bf16 model (slow first call)")
    args = ap.parse_args()

    from longrecall.models import load_model

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, tokens {args.tokens}, median of {args.reps}")
    ref = matmul_gflops(args.reps)
    print(f"bf16 matmul 4096x4096: {ref:.1f} GFLOP/s")
    ids = torch.randint(100, 40000, (1, args.tokens), generator=torch.Generator().manual_seed(0))
    options = [o for o in args.options.split(",") if o] + (["bf16+compile"] if args.compile else [])
    results = {}
    for opt in options:
        dtype = "bfloat16" if opt.startswith("bf16") else "float32"
        model = load_model(args.model, dtype=dtype).eval()
        flops, parts = prefill_flops(model, args.tokens)
        fwd = torch.compile(model) if opt.endswith("+compile") else model
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if opt == "autocast" else torch.inference_mode

        def run():
            with torch.inference_mode(), ctx():
                fwd(input_ids=ids, use_cache=False, logits_to_keep=1)

        t = median_time(run, args.reps)
        gflops = flops / t / 1e9
        results[opt] = gflops
        print(f"{opt:>13}: {t:7.2f} s  {gflops:7.1f} GFLOP/s  = {100 * gflops / ref:5.1f}% of matmul "
              f"({flops / 1e12:.2f} TFLOP: linear {parts['linear'] / 1e12:.2f}, attention {parts['attention'] / 1e12:.2f})")
        del model, fwd
    best = max(results, key=results.get)
    print(f"best: {best} at {100 * results[best] / ref:.1f}% of the bf16 matmul (target >= 40%)")


if __name__ == "__main__":
    main()
