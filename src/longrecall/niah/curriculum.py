"""An adaptive curriculum for RL: each family's difficulty follows its running success, to stay at the edge of competence.

GRPO learns only from groups whose rollouts differ; a family the policy always solves (or never does) gives
all-equal groups and no signal. Per family, the curriculum walks a ladder of settings (length, and the family's
own knob: needle count, hops, distractors), one rung up when the mean group reward over `window` groups exceeds
`high`, one rung down when it falls under `low`. Every change is kept in `history` (logged by the Atropos env, `--env.curriculum adaptive`).

Pure and seeded: the same updates give the same levels.
"""
from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

# The family's own difficulty knob (a GenSpec field) and its values, easiest first. The easiest rung is one a small
# model already solves some of the time (one needle, one hop): a ladder starting above the policy's reach never
# moves (measured: docs/results/rl/adaptive, an hour on the 2-needle / 2-hop rung under the 0.3 floor).
KNOBS: dict[str, tuple[str, list[int]]] = {
    "all_needles": ("n_needles", [1, 2, 4, 8, 16]),
    "multivalue": ("n_needles", [2, 3, 4]),
    "multiquery": ("n_needles", [2, 3, 4]),
    "multikey": ("n_distractors", [2, 5, 8]),
    "chain": ("hops", [1, 2, 3, 4]),
    "vartrack": ("hops", [2, 3, 4]),
    "narrative": ("hops", [2, 3]),
    "nonliteral": ("hops", [1, 2]),
}


def ladder(family: str, lengths: list[int]) -> list[dict]:
    """Settings from easiest to hardest, raising the length and the knob in turn (each rung changes one of them)."""
    lengths = sorted(set(lengths))
    name, values = KNOBS.get(family, (None, [None]))
    rungs, li, ki = [], 0, 0
    while True:
        rung = {"length": lengths[li]} | ({name: values[ki]} if name else {})
        rungs.append(rung)
        if li == len(lengths) - 1 and ki == len(values) - 1:
            return rungs
        if (ki <= li and ki < len(values) - 1) or li == len(lengths) - 1:
            ki += 1
        else:
            li += 1


@dataclass
class Adaptive:
    """Per-family rung of the ladder, moved by the mean reward of the last `window` groups of that family."""

    families: list[str]
    lengths: list[int]
    low: float = 0.3
    high: float = 0.7
    window: int = 8
    levels: dict[str, int] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def __post_init__(self):
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(f"adaptive curriculum: need 0 <= low < high <= 1, got low {self.low}, high {self.high}")
        self.ladders = {f: ladder(f, self.lengths) for f in self.families}
        self.levels = {f: self.levels.get(f, 0) for f in self.families}
        self.recent = {f: deque(maxlen=max(1, self.window)) for f in self.families}
        self.groups = 0

    def setting(self, family: str) -> dict:
        """The GenSpec fields for this family's current rung (length and its knob)."""
        return dict(self.ladders[family][self.levels[family]])

    def update(self, family: str, reward: float) -> dict | None:
        """Record one group's mean reward; returns the change (and logs it) when the family moves a rung."""
        self.groups += 1
        window = self.recent[family]
        window.append(reward)
        if len(window) < window.maxlen:
            return None
        mean = statistics.fmean(window)
        level, top = self.levels[family], len(self.ladders[family]) - 1
        new = level + 1 if mean > self.high and level < top else level - 1 if mean < self.low and level > 0 else level
        if new == level:
            return None
        window.clear()
        self.levels[family] = new
        event = {"groups": self.groups, "family": family, "from": level, "level": new, "success": round(mean, 3),
                 **self.setting(family)}
        self.history.append(event)
        return event

    def metrics(self) -> dict[str, float]:
        """curriculum/<family>/level and /length for the step's log."""
        out = {}
        for f in self.families:
            out[f"curriculum/{f}/level"] = float(self.levels[f])
            out[f"curriculum/{f}/length"] = float(self.setting(f)["length"])
        return out
