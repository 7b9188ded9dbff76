"""LIFT ingest steps side by side: a ~60-token QA record alone, QA records four to a step (`qa_batch: 4`), and a
1024-token segment, on the Gated Memory adapter of configs/lift-cpu.yaml. Tokens per second of forward + backward +
optimizer step, interleaved rounds in one process, medians printed with the ratios.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_lift_step.py --input sample.json --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, help="a .json sample from `longrecall niah generate` (its needles give the QA)")
    ap.add_argument("--config", default="configs/lift-cpu.yaml")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; each round times 8 QA records three ways and 1 segment")
    args = ap.parse_args()

    import torch

    from longrecall.config import load_config
    from longrecall.data.lift import build_lift_dataset, encode_record, read_input
    from longrecall.lift.ingest import IngestConfig, _batch, _batch_loss, attach_adapter
    from longrecall.models import load_model, load_tokenizer

    cfg = load_config(IngestConfig, args.config, {"data.retain_context": 0, "data.retain_chats": 0, "data.retain_absent": 0})
    tok = load_tokenizer(cfg.model)
    text, sample = read_input(args.input)
    parts = build_lift_dataset(text, tok, cfg.data, needles=sample)
    model = attach_adapter(load_model(cfg.model), cfg).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    qa = [encode_record(r, tok) for r in parts["qa"][:8]]
    seg = encode_record(parts["segments"][0], tok)
    print(f"torch threads {torch.get_num_threads()}, trainable {sum(p.numel() for p in params):,}, "
          f"QA record {statistics.mean(len(i) for i, _ in qa):.0f} tokens on average")

    def run(steps: list[list]) -> tuple[float, int]:
        t0 = time.perf_counter()
        for enc in steps:
            loss = _batch_loss(model, _batch(enc, tok.pad_token_id), cfg)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, sum(len(i) for enc in steps for i, _ in enc)

    contenders = {"qa alone": [[e] for e in qa], "qa 4 a step": [qa[:4], qa[4:]], "segment": [[seg]]}
    run(contenders["qa alone"][:1])  # warm-up
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for name, steps in contenders.items():
            seconds, tokens = run(steps)
            rates[name].append(tokens / seconds)
    med = {k: statistics.median(v) for k, v in rates.items()}
    for name, r in med.items():
        print(f"{name:12s} {r:6.0f} tokens/s  ({r / med['qa alone']:.2f}x a record alone)")


if __name__ == "__main__":
    main()
