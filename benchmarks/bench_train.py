"""Training throughput of the cpu recipe against the machine's bf16 matmul rate, measured in the same process.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/bench_train.py --lengths 1024,4096 --threads 1,2
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_train.py --lengths 4096 --threads 1 --profile 12

The model is built as `train longlora` builds it (configs/longlora-cpu.yaml: the embedded SmolLM2-135M, YaRN x2,
LoRA+ r8 on q/k/v/o, trainable tied embedding and norms, S²-Attn) and one step is what the Trainer runs: bf16
autocast, the final hidden states, the chunked loss (its head forward recomputed in backward), backward, AdamW.
--attention full times the step as the recipe's chats take it (S²-Attn steps aside so the question sees the needle);
s2 as its text blocks do.

FLOPs are counted for LoRA honestly: the frozen weights need gradients of their inputs only (2 FLOPs per parameter
and token in backward, not 4); the tied embedding is trained, so the output head also needs its weight gradient;
attention is 4·d·H per causal query-key pair forward and twice that backward. The head's recomputed forward is work
the step does but not model FLOPs, so it is not counted (the usual "model FLOPs utilisation"). The rate is compared
with the best of three 4096² bf16 matmuls at the same thread count.
"""
from __future__ import annotations

import argparse
import statistics
import time
from argparse import Namespace
from types import SimpleNamespace

import torch


def matmul_rate(n: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of the best of `repeats` n x n bf16 matmuls."""
    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def model_flops(model, n: int, pairs: float) -> float:
    """Model FLOPs of one LoRA training step on n tokens with `pairs` attended query-key pairs per layer."""
    cfg = model.config
    frozen = lora = 0
    for name, p in model.named_parameters():
        if p.ndim != 2 or "embed" in name:
            continue
        if p.requires_grad:
            lora += p.numel()
        else:
            frozen += p.numel()
    head = cfg.vocab_size * cfg.hidden_size
    attn = 4 * cfg.hidden_size * pairs * cfg.num_hidden_layers
    forward = 2 * (frozen + lora + head) * n + attn
    backward_inputs = 2 * (frozen + lora + head) * n + 2 * attn
    backward_weights = 2 * (lora + head) * n  # only what trains: LoRA matrices and the tied head/embedding
    return forward + backward_inputs + backward_weights


def causal_pairs(n: int, groups: list[tuple[int, int]] | None) -> float:
    if not groups:
        return n * (n + 1) / 2
    return sum((e - s) * (e - s + 1) / 2 for s, e in groups)


def build(config: str, max_length: int):
    from longrecall.train.recipe import LongLoraConfig, build_model, config_from_args, lora_plus_adamw

    args = Namespace(config=config, output_dir=None, set=[f"max_length={max_length}"])
    cfg = config_from_args(LongLoraConfig, args, "bench_train")
    model = build_model(cfg).train()
    targs = SimpleNamespace(learning_rate=cfg.lr, weight_decay=cfg.weight_decay, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8)
    return cfg, model, lora_plus_adamw(model, cfg.lora, targs)


def step(model, opt, ids, chunk: int, full: bool) -> float:
    import contextlib

    from longrecall.train.losses import chunked_lm_loss
    from longrecall.train.recipe import _final_hidden
    from longrecall.train.s2attn import full_attention

    with full_attention() if full else contextlib.nullcontext():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = _final_hidden(model, ids)
            loss = chunked_lm_loss(hidden, model.get_output_embeddings(), ids, chunk)
        loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/longlora-cpu.yaml")
    p.add_argument("--lengths", default="1024,4096")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--attention", default="full,s2", help="full (the recipe's chats), s2 (its text blocks), or both")
    p.add_argument("--repeats", type=int, default=2, help="timed steps per row (median reported)")
    p.add_argument("--profile", type=int, default=0, help="print the top N ops of one profiled step instead")
    p.add_argument("--frozen-bf16", action="store_true", help="also time each row with the frozen linear weights stored "
                   "in bf16 (same numerics under bf16 autocast, no per-call weight casts)")
    p.add_argument("--grad-ckpt", action="store_true", help="checkpoint every layer (what 16k needs in 24 GB); its "
                   "recomputed forward is not counted as model FLOPs")
    a = p.parse_args(argv)
    from longrecall.train.lora_plus import store_frozen_bf16
    from longrecall.train.s2attn import group_bounds, head_split, resolve_group_size

    lengths = [int(x) for x in a.lengths.split(",")]
    cfg, model, opt = build(a.config, max(lengths))
    if a.grad_ckpt:
        model.gradient_checkpointing_enable({"use_reentrant": False})
        model.enable_input_require_grads()
    torch.manual_seed(0)
    if a.profile:
        torch.set_num_threads(int(a.threads.split(",")[0]))
        ids = torch.randint(0, model.config.vocab_size, (1, lengths[0]))
        step(model, opt, ids[:, :256], cfg.loss_chunk_size, True)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step(model, opt, ids, cfg.loss_chunk_size, a.attention.split(",")[0] == "full")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.profile))
        return
    variants, opts = [("", model)], {"": opt}
    if a.frozen_bf16:  # a second copy of the model, its frozen weights in bf16, timed right after the first
        _, twin, opts["/b"] = build(a.config, max(lengths))
        if a.grad_ckpt:
            twin.gradient_checkpointing_enable({"use_reentrant": False})
            twin.enable_input_require_grads()
        store_frozen_bf16(twin)
        variants.append(("/b", twin))
    print(f"cpu recipe step ({a.config}), bf16 autocast, gradient checkpointing {'on' if a.grad_ckpt else 'off'}")
    print(f"{'threads':>7} {'length':>7} {'attention':>9} {'step s':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'peak GFLOP/s':>12} {'% of peak':>9}")
    for threads in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(threads)
        peak = matmul_rate()
        step(model, opt, torch.randint(0, model.config.vocab_size, (1, 256)), cfg.loss_chunk_size, True)  # one-off costs
        for n in lengths:
            ids = torch.randint(0, model.config.vocab_size, (1, n))
            for attention in a.attention.split(","):
                pairs = causal_pairs(n, None)
                if attention == "s2" and cfg.s2attn:  # the plain heads' groups and the shifted heads' groups
                    g = resolve_group_size(n, cfg.group_fraction, cfg.group_size)
                    plain = head_split(model.config.num_attention_heads, model.config.num_key_value_heads)[0]
                    share = plain / model.config.num_attention_heads
                    pairs = share * causal_pairs(n, group_bounds(n, g, False)) + (1 - share) * causal_pairs(n, group_bounds(n, g, True))
                for variant, m in variants:
                    times = []
                    for _ in range(a.repeats):
                        t = time.perf_counter()
                        step(m, opts[variant], ids, cfg.loss_chunk_size, attention == "full")
                        times.append(time.perf_counter() - t)
                    s = statistics.median(times)
                    rate = model_flops(m, n, pairs) / s
                    print(f"{threads:>7} {n:>7} {attention + variant:>9} {s:>8.2f} {n / s:>9.1f} {rate / 1e9:>8.1f} "
                          f"{peak / 1e9:>12.1f} {100 * rate / peak:>8.0f}%", flush=True)


if __name__ == "__main__":
    main()
