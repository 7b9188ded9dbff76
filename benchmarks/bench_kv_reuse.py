"""Several questions over one long haystack: re-prefill every time vs prefill the shared prefix once and reuse its KV cache.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_kv_reuse.py --length 4096 --questions 4
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--dtype", default="bfloat16")
    args = ap.parse_args()

    from longrecall.eval.backends import Chat, HFBackend
    from longrecall.niah import GenSpec, generate_sample

    backend = HFBackend(model=args.model, dtype=args.dtype)
    # One multiquery sample gives a real haystack with several keys to ask about, one question each.
    s = generate_sample(GenSpec(task="multiquery", length=args.length, n_needles=args.questions, seed=0), backend.tokenizer)
    keys = [n["key"] for n in s.needles if n["role"] == "target"][: args.questions]
    context = [{"role": "system", "content": s.system}, {"role": "user", "content": f"{s.instruction}\n\n{s.context}"}]
    questions = [f"What is the special value for {k} mentioned in the text?" for k in keys]
    chats = []
    for q in questions:
        msgs = [dict(m) for m in context]
        msgs[-1]["content"] += "\n\n" + q
        chats.append(Chat(msgs))
    print(f"{len(questions)} questions over a {s.prompt_tokens}-token prompt, {args.dtype}, greedy {args.max_new_tokens} tokens")

    t0 = time.perf_counter()
    fresh = backend.generate(chats, args.max_new_tokens, reuse=False)
    t_fresh = time.perf_counter() - t0
    t0 = time.perf_counter()
    reused = backend.answer_many(context, questions, max_new_tokens=args.max_new_tokens)
    t_reuse = time.perf_counter() - t0
    print(f"re-prefill each question: {t_fresh:7.2f} s")
    print(f"prefix KV reuse         : {t_reuse:7.2f} s")
    print(f"speed-up                : {t_fresh / t_reuse:7.2f}x  (same answers: {sum(a == b for a, b in zip(fresh, reused))}/{len(fresh)})")


if __name__ == "__main__":
    main()
