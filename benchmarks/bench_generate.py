"""Generation speed: longrecall's generator, its earlier form, and a naive one, side by side in one process.

    python benchmarks/bench_generate.py --lengths 131072,1048576 --repeats 3
    python benchmarks/bench_generate.py --lengths 131072,1048576 --repeats 3 --naive-max 0 --task all_needles --training 10000

All build the same kind of sample (one needle at 50% depth in procedural prose, chat template, exact length):
- cached: today's path in a new process: the haystack's token starts come from the on-disk cache (keyed by the
  tokenizer and the text) and each prompt's tokens are spliced from them (only the template and the pieces around
  the needles are encoded);
- encode: the previous path: the haystack tokenized once, then every prompt tokenized whole to measure it;
- naive: a binary search on the number of haystack sentences that tokenizes the whole prompt at every step, as many
  one-off NIAH scripts do.
--training N also times N samples of 4k tokens (a training set) end to end, in samples/s.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

from longrecall.models import load_tokenizer  # noqa: E402
from longrecall.niah import GenSpec, generate_sample  # noqa: E402
from longrecall.niah import generate as G  # noqa: E402
from longrecall.niah import tokens as T  # noqa: E402
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


def fast(tok, length: int, seed: int, task: str = "single") -> int:
    G._CACHE.clear()  # no help from an earlier call's haystack in this process (the disk cache is the point)
    return generate_sample(GenSpec(task=task, length=length, depth=0.5, haystack="prose", seed=seed), tok).prompt_tokens


@contextlib.contextmanager
def previous_path():
    """The generator as it was: no disk cache, every prompt re-tokenized whole."""
    keep = T.encode_spliced, T.cached_starts
    T.encode_spliced = lambda tok_, text, *a, **k: T.encode(tok_, text)[1]
    T.cached_starts = lambda tok_, text: T.encode(tok_, text)[1]
    try:
        yield
    finally:
        T.encode_spliced, T.cached_starts = keep


def encoded(tok, length: int, seed: int, task: str = "single") -> int:
    with previous_path():
        return fast(tok, length, seed, task)


def training_set(tok, n: int) -> float:
    """Samples/s of n 4k-token samples of mixed families, seeds and depths, as a training set is made."""
    import time as _t

    G._CACHE.clear()
    fams = ["single", "multikey", "all_needles", "chain"]
    t = _t.perf_counter()
    for i in range(n):
        generate_sample(GenSpec(task=fams[i % 4], length=4096, depth=(i % 11) / 10, haystack="prose", seed=i), tok)
    return n / (_t.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="131072,1048576")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--task", default="single")
    ap.add_argument("--naive-max", type=int, default=1048576, help="skip the naive generator above this length")
    ap.add_argument("--training", type=int, default=0, help="also time this many 4k-token samples (samples/s)")
    a = ap.parse_args()
    tok = load_tokenizer("default")
    print(f"{'length':>9} {'first s':>8} {'cached s':>9} {'encode s':>9} {'naive s':>9} {'encode/cached':>14} {'naive/cached':>13}")
    for length in [int(x) for x in a.lengths.split(",")]:
        tc, te, tn = [], [], []
        t = time.perf_counter()
        fast(tok, length, 0, a.task)  # the first sample on this haystack fills the disk cache (if it was empty)
        first = time.perf_counter() - t
        for r in range(a.repeats):
            seed = 0  # the same haystack each repeat, as a later process would see it: read from the disk cache
            t = time.perf_counter()
            n_cached = fast(tok, length, seed, a.task)
            tc.append(time.perf_counter() - t)
            t = time.perf_counter()
            n_enc = encoded(tok, length, seed, a.task)
            te.append(time.perf_counter() - t)
            assert n_cached == n_enc, (n_cached, n_enc)
            if length <= a.naive_max:
                t = time.perf_counter()
                naive(tok, length, r)
                tn.append(time.perf_counter() - t)
        mc, me = statistics.median(tc), statistics.median(te)
        mn = statistics.median(tn) if tn else float("nan")
        print(f"{length:>9} {first:>8.2f} {mc:>9.2f} {me:>9.2f} {mn:>9.2f} {me / mc:>13.1f}x {mn / mc:>12.1f}x", flush=True)
    if a.training:
        fast_rate = training_set(tok, a.training)
        with previous_path():
            enc_rate = training_set(tok, a.training)
        print(f"training set, {a.training} samples of 4,096 tokens: cached {fast_rate:.1f} samples/s, "
              f"encode {enc_rate:.1f} samples/s ({fast_rate / enc_rate:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
