"""Generation speed: longrecall's tokenize-once generator vs a naive one that re-tokenizes inside its length search.

    python benchmarks/bench_generate.py --lengths 131072,1048576 --repeats 3

Both build the same kind of sample (one needle at 50% depth in procedural prose, chat template, exact length)
in the same process; the naive one binary-searches the number of haystack sentences and tokenizes the whole
prompt at every step, as many one-off NIAH scripts do.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

from longrecall.models import load_tokenizer  # noqa: E402
from longrecall.niah import GenSpec, generate_sample  # noqa: E402
from longrecall.niah import generate as G  # noqa: E402
from longrecall.niah.haystacks import prose_text  # noqa: E402


def naive(tok, length: int, seed: int) -> int:
    """Binary search on the sentence count, tokenizing the whole chat prompt at every step."""
    sentences = prose_text(int(length / 16) + 100, seed).split(". ")
    needle = "The special magic number for brave-otter is 1234567."
    budget = 28

    def build(n):
        hay = sentences[:n]
        hay.insert(n // 2, needle)
        user = "Read the following text.\n\n" + ". ".join(hay) + "\n\nWhat is the special magic number for brave-otter?"
        prompt = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
        return len(tok(prompt, add_special_tokens=False)["input_ids"])

    lo, hi = 0, len(sentences)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if build(mid) + budget <= length:
            lo = mid
        else:
            hi = mid - 1
    return build(lo)


def fast(tok, length: int, seed: int) -> int:
    G._CACHE.clear()  # no help from an earlier call's haystack
    return generate_sample(GenSpec(task="single", length=length, depth=0.5, haystack="prose", seed=seed), tok).prompt_tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="131072,1048576")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-max", type=int, default=1048576, help="skip the naive generator above this length")
    a = ap.parse_args()
    tok = load_tokenizer("default")
    print(f"{'length':>9} {'longrecall s':>13} {'naive s':>9} {'ratio':>7}")
    for length in [int(x) for x in a.lengths.split(",")]:
        tf, tn = [], []
        for r in range(a.repeats):
            t = time.perf_counter()
            fast(tok, length, r)
            tf.append(time.perf_counter() - t)
            if length <= a.naive_max:
                t = time.perf_counter()
                naive(tok, length, r)
                tn.append(time.perf_counter() - t)
        mf = statistics.median(tf)
        mn = statistics.median(tn) if tn else float("nan")
        print(f"{length:>9} {mf:>13.2f} {mn:>9.2f} {mn / mf:>6.1f}x", flush=True)


if __name__ == "__main__":
    main()
