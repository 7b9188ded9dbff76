"""What a family builds: the needles to insert and the question with its answers (no tokenizer, no haystack)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Needle:
    text: str
    depth: float  # where to insert, 0..1 of the haystack
    role: str  # "target" | "distractor"
    key: str = ""
    value: str = ""


@dataclass
class Task:
    needles: list[Needle]
    question: str
    answers: list[str]
    metric: str
    answer_budget: int
    chain: list[str] = field(default_factory=list)
    answer_prefix: str = ""
    value_kind: str = ""
    dense: Callable[[random.Random], str] | None = None  # maker of needle-dense haystack sentences


def depths(rng: random.Random, first: float, n: int) -> list[float]:
    """The first target at the requested depth, the others at seeded random depths."""
    return [first] + [rng.random() for _ in range(n - 1)]


def ordered_depths(rng: random.Random, first: float, n: int) -> list[float]:
    """n depths in reading order, one of them the requested depth (facts whose order matters)."""
    return sorted(depths(rng, first, n))


def pool(pair: tuple[list, list], phrasing: str) -> list:
    """The train pool, the held-out pool, both ('any'), or the train pool grown by the grammar ('grammar'; the train
    pool itself where the grammar has none)."""
    train, held = pair
    if phrasing == "grammar":
        from .grammar import pool as grown

        return grown(pair)
    return {"train": list(train), "heldout": list(held), "any": list(train) + list(held)}[phrasing]
