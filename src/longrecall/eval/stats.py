"""Intervals for scores: Wilson for 0/1 scores, a seeded percentile bootstrap otherwise, paired differences, and
effective length with its own bootstrap interval. Pure functions of lists of scores in [0, 1]; results in points.

    OMP_NUM_THREADS=1 .venv/bin/pytest -q tests/eval/test_stats.py
"""
from __future__ import annotations

import math
import random
from typing import Callable, Mapping, Sequence

Z95 = 1.959964


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n, in [0, 1] (correct at 0 and n, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def bootstrap(values: Sequence[float], stat: Callable[[Sequence[float]], float] | None = None, resamples: int = 2000,
              seed: int = 0) -> tuple[float, float]:
    """Seeded 95% percentile bootstrap interval of `stat` (default: the mean)."""
    stat = stat or (lambda v: sum(v) / len(v))
    if not values:
        return (0.0, 1.0)
    rng, n = random.Random(seed), len(values)
    draws = sorted(stat([values[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    return (draws[int(0.025 * resamples)], draws[int(0.975 * resamples) - 1])


def summarize(values: Sequence[float], seed: int = 0) -> dict:
    """Mean and 95% interval in points, with the method used: Wilson when every score is 0 or 1, else bootstrap."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "lo": None, "hi": None, "method": None}
    binary = all(v in (0.0, 1.0) for v in values)
    lo, hi = wilson(int(sum(values)), n) if binary else bootstrap(values, seed=seed)
    return {"n": n, "mean": 100 * sum(values) / n, "lo": 100 * lo, "hi": 100 * hi, "method": "wilson" if binary else "bootstrap"}


def paired(a: Mapping[str, float], b: Mapping[str, float], resamples: int = 2000, seed: int = 0) -> dict | None:
    """B − A in points over the sample ids both scored: mean, seeded 95% paired bootstrap interval, won/tied/lost."""
    ids = sorted(a.keys() & b.keys())
    if not ids:
        return None
    diffs = [100.0 * (b[i] - a[i]) for i in ids]
    lo, hi = bootstrap(diffs, resamples=resamples, seed=seed)
    return {"n": len(diffs), "mean": sum(diffs) / len(diffs), "lo": lo, "hi": hi,
            "won": sum(d > 0 for d in diffs), "tied": sum(d == 0 for d in diffs), "lost": sum(d < 0 for d in diffs),
            "significant": lo > 0 or hi < 0}


def unpaired(a: Sequence[float], b: Sequence[float], resamples: int = 2000, seed: int = 0) -> dict | None:
    """B − A in points for two independent sets of samples (e.g. the same config run with another seed): the
    difference of means and its seeded 95% two-sample bootstrap interval; they agree when it includes 0."""
    if not a or not b:
        return None
    rng = random.Random(seed)
    na, nb = len(a), len(b)
    draws = sorted(100.0 * (sum(b[rng.randrange(nb)] for _ in range(nb)) / nb - sum(a[rng.randrange(na)] for _ in range(na)) / na)
                   for _ in range(resamples))
    lo, hi = draws[int(0.025 * resamples)], draws[int(0.975 * resamples) - 1]
    return {"n_a": na, "n_b": nb, "mean": 100.0 * (sum(b) / nb - sum(a) / na), "lo": lo, "hi": hi, "agree": lo <= 0 <= hi}


Cells = Mapping[str, Mapping[int, Sequence[float]]]  # {family: {length: [scores]}}


def _averages(cells: Cells) -> dict[int, float | None]:
    """{length: mean over families of each family's mean}, each family weighing the same (RULER's average)."""
    lengths = sorted({L for per in cells.values() for L in per})
    out = {}
    for L in lengths:
        fams = [sum(v) / len(v) for per in cells.values() if (v := per.get(L))]
        out[L] = 100 * sum(fams) / len(fams) if fams else None
    return out


def effective_length(cells: Cells, rule: str = "ruler", threshold: float = 85.6, ratio: float = 0.85) -> int:
    """Longest length L such that every length <= L passes; 0 when the shortest fails.

    ruler: the family average stays >= `threshold` points. nolima: it stays >= `ratio` x the average at the shortest
    length (the model's own short-context score, as NoLiMa normalises).
    """
    avg = _averages(cells)
    if not avg:
        return 0
    base = avg[min(avg)]
    bar = threshold if rule == "ruler" else (ratio * base if base else math.inf)
    best = 0
    for L, v in sorted(avg.items()):
        if v is None or v < bar:
            break
        best = L
    return best


def effective_length_interval(cells: Cells, rule: str = "ruler", resamples: int = 500, seed: int = 0, **kw) -> tuple[int, int]:
    """95% bootstrap interval of the effective length: resample the scores within every family × length cell."""
    rng = random.Random(seed)
    draws = []
    for _ in range(resamples):
        boot = {f: {L: [v[rng.randrange(len(v))] for _ in v] for L, v in per.items() if v} for f, per in cells.items()}
        draws.append(effective_length(boot, rule, **kw))
    draws.sort()
    return (draws[int(0.025 * resamples)], draws[int(0.975 * resamples) - 1])
