"""S²-Attn vs full SDPA: one training step (fwd + bwd, bf16 autocast, batch 1) of a random SmolLM2-135M-shaped model.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/bench_s2attn.py --lengths 8192,16384 --repeats 3

Each contender runs in its own subprocess so its peak memory (RSS on CPU, allocator peak on CUDA) is its own.
The loss is chunked (longrecall.train.losses) so neither contender materialises N x vocab fp32 logits.
Contenders: full SDPA; S²-Attn as shipped (each run of equal groups a strided view, outputs written in place); and
"s2-cat", the earlier S²-Attn that stacked the groups with torch.cat for the fused kernel (kept here, not in the
package, to measure what the views saved). The FLOP ceiling is the ratio of the two step's FLOPs (matmuls of the
weights, 2 per parameter and token, times 4 with the checkpointed recompute and the backward; attention 4·d·H per
query and key pair, causal): S²-Attn can beat it only where its kernels run closer to peak than full attention's.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

CONTENDERS = ("sdpa", "s2attn", "s2-cat")
# SmolLM2-135M's exact shape; the weights are random, which costs the same as trained ones.
SMOLLM2_SHAPE = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True,
)


def step_flops(n: int, group_fraction: float | None, grad_ckpt: bool) -> float:
    """FLOPs of one training step at n tokens: forward, (checkpointed recompute), backward = 2 forwards."""
    c = SMOLLM2_SHAPE
    hd, kv = c["hidden_size"], c["hidden_size"] // c["num_attention_heads"] * c["num_key_value_heads"]
    per_layer = 2 * hd * hd + 2 * hd * kv + 3 * hd * c["intermediate_size"]
    params = c["num_hidden_layers"] * per_layer + hd * c["vocab_size"]  # the LM head runs on every token
    pairs = n * (n + 1) / 2  # causal query-key pairs
    if group_fraction:  # k groups of n/k tokens, on both head halves
        k = -(-n // max(2, math.ceil(n * group_fraction)))
        pairs = k * (n / k) * (n / k + 1) / 2
    attn = 4 * hd * pairs * c["num_hidden_layers"]
    forward = 2 * params * n + attn
    return forward * (4 if grad_ckpt else 3)


def _peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _use_stacked_groups() -> None:
    """The earlier S²-Attn inner loop: groups of one length stacked in the batch dim with torch.cat, outputs
    concatenated back (copies the fused kernel's inputs and outputs; replaced by strided views)."""
    from collections import defaultdict

    import torch
    import torch.nn.functional as F

    from longrecall.train import s2attn

    def stacked(q, k, v, bounds, scale, dropout, out):
        by_len = defaultdict(list)
        for s, e in bounds:
            by_len[e - s].append(s)
        pieces = {}
        for length, starts in by_len.items():
            def stack(x):
                parts = [x[:, :, s : s + length] for s in starts]
                return torch.cat(parts) if len(parts) > 1 else parts[0]

            o = F.scaled_dot_product_attention(stack(q), stack(k), stack(v), dropout_p=dropout, is_causal=True,
                                               scale=scale, enable_gqa=q.shape[1] != k.shape[1])
            pieces.update(zip(starts, o.split(q.shape[0])))
        whole = torch.cat([pieces[s] for s, _ in bounds], dim=2) if len(bounds) > 1 else pieces[0]
        out.copy_(whole.transpose(1, 2))

    s2attn._grouped_sdpa = stacked


def worker(contender: str, length: int, repeats: int, grad_ckpt: bool, group_fraction: float, chunk: int, device: str) -> dict:
    """Time `repeats` training steps of one contender at one length; returns seconds per step and peak memory."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from longrecall.train.losses import causal_lm_loss
    from longrecall.train.s2attn import enable_s2attn

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**SMOLLM2_SHAPE), attn_implementation="sdpa").to(device).train()
    if contender in ("s2attn", "s2-cat"):
        enable_s2attn(model, group_fraction=group_fraction)
    if contender == "s2-cat":
        _use_stacked_groups()
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
        ceiling = step_flops(n, None, args.grad_ckpt) / step_flops(n, args.group_fraction, args.grad_ckpt)
        entry = {"length": n, **row, "flop_ceiling": ceiling}
        for c in CONTENDERS[1:]:
            ratio = {k: statistics.median(row["sdpa"][k]) / statistics.median(row[c][k]) for k in ("seconds", "cpu_seconds")}
            mem = row["sdpa"]["peak_mb"] / row[c]["peak_mb"]
            print(f"{n:>7} {'sdpa/' + c:>9} {ratio['seconds']:>7.2f}x {ratio['cpu_seconds']:>7.2f}x {mem:>12.2f}x"
                  f"   (>1: {c} faster / leaner; FLOP ceiling {ceiling:.2f}x)")
            entry[c + "_ratio"] = {"wall": ratio["seconds"], "cpu": ratio["cpu_seconds"], "memory": mem}
        for c in CONTENDERS:
            gflops = step_flops(n, None if c == "sdpa" else args.group_fraction, args.grad_ckpt) / 1e9
            print(f"{n:>7} {c:>9} {gflops / statistics.median(row[c]['cpu_seconds']):>7.1f} GFLOP per CPU second")
        results.append(entry)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
