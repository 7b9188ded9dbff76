"""Related needles in natural sentences: person -> locker -> room -> building -> city, with distractor chains.

Each hop is one fact that points to the next; the question starts at either end of the chain, so the model must
follow the facts forward (where is X's item?) or backward (whose item is in Y?). Distractor chains share the
person's name (another item) or, when asked forward, merge into the target's last hop.
"""
from __future__ import annotations

import random

from .task import pool

PEOPLE = (
    "Alice Amara Bruno Camille Dmitri Elena Farid Greta Hugo Ingrid Jonas Keiko Liam Marta Nadia Oskar Priya "
    "Quentin Rosa Stefan Tariq Ursula Viktor Wanda Xavier Yara Zoltan Beatrix Cyrus Delia Emil Fiona Gideon Helga "
    "Ivo Janelle Kasper Leona Mateo Nora Orla Pavel Renata Silas Tamsin Umar Vera Wendell"
).split()
ITEMS = "documents|bicycle|passport|violin|umbrella|toolbox|winter coat|camera|chess set|telescope|sketchbook|spare keys".split("|")
BUILDINGS = (
    "Elmstead Hall|Northgate Tower|Bellmoor House|Ashcombe Library|Ravenscar Depot|Whitford Annex|Larkspur Centre|"
    "Oakhurst Pavilion|Greyhaven Archive|Thornbury Station|Millbrook Gallery|Stonegate Observatory"
).split("|")
CITIES = "Valmora|Kestrelby|Dunmarsh|Port Hollis|Carrowvale|Eastwick Falls|Brightwater|Lindgrove|Harrowgate|Saltmere".split("|")

# Facts for each hop: (train phrasings, held-out phrasings). a = this hop's entity, b = the next one.
HOPS = {
    "locker": (
        ["{a} keeps the {item} in locker {b}.", "The {item} of {a} is stored in locker {b}.", "Locker {b} holds the {item} that belongs to {a}."],
        ["{a} left the {item} inside locker {b}.", "If you need {a}'s {item}, open locker {b}."],
    ),
    "room": (
        ["Locker {a} is in room {b}.", "You will find locker {a} inside room {b}.", "Room {b} contains locker {a}."],
        ["Locker {a} stands against the wall of room {b}.", "Locker {a} was moved to room {b}."],
    ),
    "building": (
        ["Room {a} is located in {b}.", "{b} is where room {a} can be found.", "Room {a} belongs to {b}."],
        ["Room {a} sits on the second floor of {b}.", "The plans show room {a} inside {b}."],
    ),
    "city": (
        ["{a} stands in the city of {b}.", "The city of {b} is home to {a}.", "{a} was built in {b}."],
        ["{a} is a landmark of {b}.", "Visitors to {b} often pass {a}."],
    ),
}
TYPES = ["person", "locker", "room", "building", "city"]
FORWARD_Q = {
    "locker": "Which locker holds {p}'s {item}?",
    "room": "In which room is {p}'s {item} kept?",
    "building": "In which building is {p}'s {item} kept?",
    "city": "In which city is {p}'s {item} kept?",
}
FORWARD_Q_HELD = {
    "locker": "Name the locker where {p}'s {item} can be found.",
    "room": "{p} is looking for the {item}. Which room should they go to?",
    "building": "{p}'s {item} is somewhere on campus. Which building?",
    "city": "{p} wants the {item} back. In what city is it?",
}
BACKWARD_Q = "Whose {item} is kept in {where}? Follow the facts back to the person."
BACKWARD_Q_HELD = "Someone's {item} ended up in {where}. Who does it belong to?"
# The same questions as (train, held-out) pools, so that `--phrasing grammar` can grow them (niah/grammar.py).
FORWARD_PAIRS = {k: ([FORWARD_Q[k]], [FORWARD_Q_HELD[k]]) for k in FORWARD_Q}
BACKWARD_PAIR = ([BACKWARD_Q], [BACKWARD_Q_HELD])
WHERE = {"locker": "locker {x}", "room": "room {x}", "building": "{x}", "city": "the city of {x}"}


def _entity(kind: str, rng: random.Random) -> str:
    if kind == "locker":
        return str(rng.randint(1000, 9999))
    if kind == "room":
        return rng.choice("ABCDEFGHKLMNPRST") + str(rng.randint(100, 999))
    if kind == "building":
        return rng.choice(BUILDINGS)
    return rng.choice(CITIES)


def _fresh(kind, rng, used):
    for _ in range(10000):
        e = _entity(kind, rng)
        if e not in used:
            used.add(e)
            return e
    raise ValueError(f"ran out of {kind} names")


def _facts(rng, phrasing, person, item, ents):
    """One fact sentence per hop along person -> ents[0] -> ents[1] ..."""
    out = []
    prev = person
    for hop, ent in enumerate(ents):
        kind = TYPES[hop + 1]
        out.append(rng.choice(pool(HOPS[kind], phrasing)).format(a=prev, b=ent, item=item))
        prev = ent
    return out


def build_chain(spec, rng: random.Random, Needle, Task):
    hops = spec.hops or rng.randint(1, 4)
    if not 1 <= hops <= 4:
        from ..errors import UserError

        raise UserError(f"chains have 1-4 hops, got {hops}: set --hops 1..4")
    direction = spec.direction if spec.direction != "any" else rng.choice(["forward", "backward"])
    used: set[str] = set()
    people = rng.sample(PEOPLE, 8)
    person, item = people[0], rng.choice(ITEMS)
    kinds = TYPES[1: hops + 1]
    ents = [_fresh(k, rng, used) for k in kinds]
    needles = []
    facts = _facts(rng, spec.phrasing, person, item, ents)
    depths = [spec.depth] + [rng.random() for _ in facts[1:]]
    for f, d, e in zip(facts, depths, ents):
        needles.append(Needle(f, d, "target", person, e))
    n_dis = spec.n_distractors if spec.n_distractors is not None else 3
    for i in range(n_dis):
        # First distractor: same person, another item (shares the name). Others: other people, same item.
        if i == 0:
            p, it = person, rng.choice([x for x in ITEMS if x != item])
        else:
            p, it = people[i], item
        dents = [_fresh(k, rng, used) for k in kinds]
        if direction == "forward" and i == 1 and hops >= 2:
            dents[-1] = ents[-1]  # merges into the target's last hop: harmless forward, a trap for shortcuts
        for f, e in zip(_facts(rng, spec.phrasing, p, it, dents), dents):
            needles.append(Needle(f, rng.random(), "distractor", p, e))
    held = spec.phrasing == "heldout" or (spec.phrasing == "any" and rng.random() < 0.3)
    grown = spec.phrasing == "grammar"  # draws a form only then: the train and held-out samples stay as they were
    if direction == "forward":
        form = rng.choice(pool(FORWARD_PAIRS[kinds[-1]], "grammar")) if grown else (FORWARD_Q_HELD if held else FORWARD_Q)[kinds[-1]]
        q = form.format(p=person, item=item)
        return Task(needles, q, [ents[-1]], "chain", 48, chain=list(ents), value_kind="entity")
    where = WHERE[kinds[-1]].format(x=ents[-1])
    form = rng.choice(pool(BACKWARD_PAIR, "grammar")) if grown else (BACKWARD_Q_HELD if held else BACKWARD_Q)
    q = form.format(item=item, where=where)
    return Task(needles, q, [person], "chain", 48, chain=list(reversed(ents[:-1])) + [person], value_kind="entity")
