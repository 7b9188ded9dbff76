"""S²-Attn vs full SDPA: one training step (fwd + bwd, bf16 autocast, batch 1) of a random SmolLM2-135M-shaped model.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/bench_s2attn.py --lengths 8192,16384 --repeats 3

Each contender runs in its own subprocess so its peak memory (RSS on CPU, allocator peak on CUDA) is its own.
The loss is chunked (longrecall.train.losses) so neither contender materialises N x vocab fp32 logits.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONTENDERS = ("sdpa", "s2attn")
# SmolLM2-135M's exact shape; the weights are random, which costs the same as trained ones.
SMOLLM2_SHAPE = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True,
)


def _peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(contender: str, length: int, repeats: int, grad_ckpt: bool, group_fraction: float, chunk: int, device: str) -> dict:
    """Time `repeats` training steps of one contender at one length; returns seconds per step and peak memory."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from longrecall.train.losses import causal_lm_loss
    from longrecall.train.s2attn import enable_s2attn

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**SMOLLM2_SHAPE), attn_implementation="sdpa").to(device).train()
    if contender == "s2attn":
        enable_s2attn(model, group_fraction=group_fraction)
    if grad_ckpt:
        model.activation_checkpointing_enable({"use_reentrant": False})
    ids = torch.randint(0, SMOLLM2_SHAPE["vocab_size"], (1, length), device=device)
    base_mb = _peak_mb(device)
    seconds, cpu_seconds = [], []
    # One short untimed step first: one-off costs (lazy init, kernel selection) stay out of the timings.
    for step in range(-1, repeats):
        x = ids[:, : min(length, 512)] if step < 0 else ids
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            loss = causal_lm_loss(model, x, chunk_size=chunk, use_cache=False)
        loss.backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step >= 0:
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
        model.zero_grad(set_to_none=True)
    return {"contender": contender, "length": length, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": _peak_mb(device),
            "model_mb": base_mb, "loss": loss.item(), "threads": torch.get_num_threads()}


def run_contender(args, contender: str, length: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", contender, "--lengths", str(length), "--repeats", str(args.repeats),
           "--group-fraction", str(args.group_fraction), "--chunk", str(args.chunk), "--device", args.device]
    if args.grad_ckpt:
        cmd.append("--grad-ckpt")
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        sys.exit(f"{contender} at {length} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="8192,16384", help="comma-separated sequence lengths")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per contender (median reported)")
    p.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing on every layer")
    p.add_argument("--group-fraction", type=float, default=0.25, help="S²-Attn group size as a fraction of the length")
    p.add_argument("--chunk", type=int, default=2048, help="tokens per lm_head/loss chunk")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.worker:
        print(json.dumps(worker(args.worker, lengths[0], args.repeats, args.grad_ckpt, args.group_fraction, args.chunk, args.device)))
        return
    memory = "peak GPU MiB" if args.device.startswith("cuda") else "peak RSS MiB"
    print(f"one training step, batch 1, bf16 autocast, grad-ckpt={args.grad_ckpt}, repeats={args.repeats}, device={args.device}")
    # CPU seconds (all threads) are robust to other jobs on a shared machine; wall seconds are what a user waits.
    print(f"{'length':>7} {'contender':>9} {'wall s':>8} {'cpu s':>8} {memory:>13} {'model MiB':>10} {'threads':>7}")
    results = []
    for n in lengths:
        row = {c: run_contender(args, c, n) for c in CONTENDERS}
        for c, r in row.items():
            wall, cpu = statistics.median(r["seconds"]), statistics.median(r["cpu_seconds"])
            print(f"{n:>7} {c:>9} {wall:>8.2f} {cpu:>8.2f} {r['peak_mb']:>13.0f} {r['model_mb']:>10.0f} {r['threads']:>7}")
        ratio = {k: statistics.median(row["sdpa"][k]) / statistics.median(row["s2attn"][k]) for k in ("seconds", "cpu_seconds")}
        mem = row["sdpa"]["peak_mb"] / row["s2attn"]["peak_mb"]
        print(f"{n:>7} {'ratio':>9} {ratio['seconds']:>7.2f}x {ratio['cpu_seconds']:>7.2f}x {mem:>12.2f}x"
              "   (sdpa / s2attn: >1 means S²-Attn is faster / leaner)")
        results.append({"length": n, **row, "speed_ratio": ratio["seconds"], "cpu_speed_ratio": ratio["cpu_seconds"],
                        "memory_ratio": mem})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
