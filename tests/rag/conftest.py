"""Fixtures for the rag tests: small synthetic texts shaped like the generator's related-needles and all-needles tasks.

The texts come through the `synth` fixture (pytest runs with --import-mode=importlib, so tests cannot import helpers)."""
from __future__ import annotations

import random
import types

import pytest

NAMES = ["Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas"]
WINGS = ["Kestrel", "Osprey", "Heron", "Falcon", "Plover", "Merlin"]
_FILLER = [
    "{n} walked past the old mill near the river at {d} o'clock.",
    "The committee met on Tuesday and {n} took notes about budget line {d}.",
    "Rain fell over the valley while {n} waited for the bus.",
    "{n} said the harvest was late this year, perhaps by {d} days.",
    "A quiet street led to the market, where {n} bought bread.",
    "The grass is green and the sky is blue.",
    "Nobody remembered why the bridge had been painted red.",
]


def filler(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(_FILLER).format(n=rng.choice(NAMES), d=rng.randint(10, 99)) for _ in range(n)]


def chain_text(seed: int, n_filler: int = 300, n_chains: int = 5):
    """Locker chains: "X's locker is locker N." -> "Locker N is in room C." -> "Room C is in the W wing."."""
    rng = random.Random(seed)
    sents = filler(rng, n_filler)
    chains = []
    for name in rng.sample(NAMES, n_chains):
        num, room, wing = str(rng.randint(1000, 9999)), f"{rng.choice('ABCDEFGH')}{rng.randint(10, 99)}", rng.choice(WINGS)
        facts = [f"{name}'s locker is locker {num}.", f"Locker {num} is in room {room}.", f"Room {room} is in the {wing} wing."]
        chains.append({"name": name, "num": num, "room": room, "wing": wing, "facts": facts})
        for f in facts:
            sents.insert(rng.randrange(len(sents) + 1), f)
    return " ".join(sents), chains


def needles_text(seed: int, key: str = "brave-lion", other: str = "calm-tiger", n: int = 6, n_filler: int = 300):
    """All-needles shape: n values for `key` and n distractor values for `other`, spread through filler."""
    rng = random.Random(seed)
    sents = filler(rng, n_filler)
    values = {key: [], other: []}
    for k in (key, other):
        for _ in range(n):
            v = str(rng.randint(1_000_000, 9_999_999))
            values[k].append(v)
            sents.insert(rng.randrange(len(sents) + 1), f"One of the special magic numbers for {k} is: {v}.")
    return " ".join(sents), values


def vartrack_text(seed: int, hops: int = 4, n_filler: int = 200):
    """Variable tracking: VAR A = 12345. VAR B = VAR A. ... and a distractor chain with another value."""
    rng = random.Random(seed)
    sents = filler(rng, n_filler)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    chains = []
    for value in (str(rng.randint(10000, 99999)), str(rng.randint(10000, 99999))):
        names = ["".join(rng.choice(letters) for _ in range(5)) for _ in range(hops + 1)]
        lines = [f"VAR {names[0]} = {value}."] + [f"VAR {b} = VAR {a}." for a, b in zip(names, names[1:])]
        pos = sorted(rng.randrange(len(sents) + 1) for _ in lines)
        for offset, (p, line) in enumerate(zip(pos, lines)):
            sents.insert(p + offset, line)  # keep the chain in order, as the generator does
        chains.append({"value": value, "names": names})
    return " ".join(sents), chains


@pytest.fixture(scope="session")
def synth():
    return types.SimpleNamespace(chain_text=chain_text, needles_text=needles_text, vartrack_text=vartrack_text)
