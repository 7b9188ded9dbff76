"""An every-X question read one evidence sentence at a time (memory.listing): the plain left-padded batch vs the
batch whose shared opening (system turn, "Notes:") is prefilled once (memory.batched). Same reader, same prompts,
one process; the answers must be the same.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_listing.py --needles 16 64 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reader", default="reader-v1", help="base, reader-v1, or an adapter folder")
    ap.add_argument("--needles", type=int, nargs="+", default=[16, 64], help="sentences (one needle each) per question")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    from longrecall.memory import listing
    from longrecall.memory.api import build_prompt
    from longrecall.memory.reader import load_reader
    from longrecall.models import load_tokenizer
    from longrecall.niah import GenSpec, generate_sample

    print(f"torch threads {torch.get_num_threads()}, reader {args.reader}, {listing.BATCH} reads a batch, "
          f"cap {listing.TOKENS_PER_SENTENCE * listing.GROUP + 8} tokens")
    read = load_reader(args.reader, max_new_tokens=64)
    tok = load_tokenizer("default")
    for n in args.needles:
        s = generate_sample(GenSpec(task="all_needles", length=max(2048, 64 * n), n_needles=n, seed=n), tok)
        prompts = [build_prompt(s.question, d["text"]) for d in s.needles if d["role"] == "target"]
        cap = listing.TOKENS_PER_SENTENCE * listing.GROUP + 8
        times: dict[bool, list[float]] = {False: [], True: []}
        cpu: dict[bool, list[float]] = {False: [], True: []}
        answers: dict[bool, list[str]] = {}
        read.many(prompts[:2], cap=4)  # warm-up
        for _ in range(args.repeats):
            for share in (False, True):  # interleaved: a load change hits both
                t0, c0 = time.perf_counter(), time.process_time()
                answers[share] = [a for j in range(0, len(prompts), listing.BATCH)
                                  for a in read.many(prompts[j:j + listing.BATCH], cap=cap, share=share)]
                times[share].append(time.perf_counter() - t0)
                cpu[share].append(time.process_time() - c0)
        plain, shared = statistics.median(times[False]), statistics.median(times[True])
        plain_cpu, shared_cpu = statistics.median(cpu[False]), statistics.median(cpu[True])
        same = sum(a == b for a, b in zip(answers[False], answers[True]))
        found = sum(d["value"] in a for d, a in zip([d for d in s.needles if d["role"] == "target"], answers[True]))
        print(f"{len(prompts):3d} sentences: plain batch {plain:6.2f} s, shared opening {shared:6.2f} s, "
              f"{plain / shared:4.2f}x; CPU time {plain_cpu:6.2f} s vs {shared_cpu:6.2f} s, {plain_cpu / shared_cpu:4.2f}x "
              f"(medians of {args.repeats}); same answers {same}/{len(prompts)}, values found {found}/{len(prompts)}")


if __name__ == "__main__":
    main()
