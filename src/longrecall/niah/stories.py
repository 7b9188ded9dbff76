"""The newer families: non-literal needles (after NoLiMa), key-value lines, all-needles by category, narratives.

- nonliteral: "Kofi left their bike at the boathouse." asked as "Where should someone look for the bicycle that
  belongs to Kofi?": the question shares no content word with the needle but the person (tests check every
  sample). Two hops add "The boathouse is in the Dunmore district." and ask which part of town.
- kvlines: one record among near-identical records (the haystack itself is made of such lines).
- category: every city the text says someone visited, among cities named but not visited.
- narrative: an object travels with whoever carries it; where is it at the end?
"""
from __future__ import annotations

import random

from ..errors import UserError
from . import lexicon as X
from . import needles as N
from .chains import PEOPLE
from .task import Needle, Task, depths, ordered_depths, pool


def _people(rng: random.Random, n: int) -> list[str]:
    return rng.sample(PEOPLE, n)


def nonliteral(spec, rng: random.Random) -> Task:
    hops = spec.hops or rng.choice([1, 2])
    if hops not in (1, 2):
        raise UserError(f"nonliteral needles have 1 or 2 hops, got {hops}: set --hops 1 or 2")
    items = pool(X.NL_ITEMS, spec.phrasing)
    n_dis = spec.n_distractors if spec.n_distractors is not None else rng.randint(5, 7)
    # Pairs are swapped at random, so neither word of a pair is always the needle's.
    pairs = [p if rng.random() < 0.5 else (p[1], p[0]) for p in rng.sample(items, min(len(items), 4))]
    (word, asked), others = pairs[0], pairs[1:]
    people = _people(rng, n_dis + 1)
    person = people[0]
    places = rng.sample(X.PLACES, n_dis + 1)
    puts = pool(X.NL_PUT, spec.phrasing)
    depth_list = depths(rng, spec.depth, hops)
    needles = [Needle(rng.choice(puts).format(p=person, item=word, place=places[0]), depth_list[0], "target", person, places[0])]
    for i in range(1, n_dis + 1):
        # The first distractor is the same person with another item; then other people with the same item; then others.
        p, w = (person, others[0][0]) if i == 1 else (people[i], word) if i <= 3 else (people[i], rng.choice(others)[0])
        needles.append(Needle(rng.choice(puts).format(p=p, item=w, place=places[i]), rng.random(), "distractor", p, places[i]))
    if hops == 1:
        q = rng.choice(pool(X.NL_Q1, spec.phrasing)).format(p=person, item=asked)
        return Task(needles, q, [places[0]], "contains", 32, answer_prefix=f"The {asked} is at the", value_kind="place")
    districts = rng.sample(pool(X.DISTRICTS, spec.phrasing), min(n_dis + 1, len(X.DISTRICTS[0])))
    texts = pool(X.NL_DISTRICT, spec.phrasing)
    for i, (pl, d) in enumerate(zip(places, districts)):
        depth, role = (depth_list[1], "target") if i == 0 else (rng.random(), "distractor")
        needles.append(Needle(rng.choice(texts).format(place=pl, district=d), depth, role, pl, d))
    q = rng.choice(pool(X.NL_Q2, spec.phrasing)).format(p=person, item=asked)
    return Task(needles, q, [districts[0]], "chain", 32, chain=[places[0], districts[0]], value_kind="place")


def kvlines(spec, rng: random.Random) -> Task:
    """One record among records of the same shape; its near neighbours share half of its key."""
    kind = spec.needle_kind if spec.needle_kind in ("number", "word") else "number"
    fmt = rng.choice(pool(X.KV_FORMATS, spec.phrasing))
    adj, noun = rng.choice(N.KEYS), rng.choice(N.NOUNS)
    key = f"{adj}-{noun}"
    n_dis = spec.n_distractors if spec.n_distractors is not None else rng.randint(3, 5)
    near = {f"{adj}-{n}" for n in rng.sample(N.NOUNS, 4) if n != noun} | {f"{a}-{noun}" for a in rng.sample(N.KEYS, 4) if a != adj}
    near_keys = rng.sample(sorted(near), min(n_dis, len(near)))
    values = N.distinct(rng, lambda r: N.make_value(kind, r), 1 + len(near_keys))
    needles = [Needle(fmt.format(key=key, value=values[0]), spec.depth, "target", key, values[0])]
    for k, v in zip(near_keys, values[1:]):
        needles.append(Needle(fmt.format(key=k, value=v), rng.random(), "distractor", k, v))
    avoid = {key, *near_keys, *values}

    def dense(r: random.Random) -> str:
        k = N.make_key(r)
        while k in avoid:
            k = N.make_key(r)
        v = N.make_value(kind, r)
        while v in avoid:
            v = N.make_value(kind, r)
        return fmt.format(key=k, value=v)

    q = rng.choice(pool(X.KV_Q, spec.phrasing)).format(key=key)
    return Task(needles, q, [values[0]], "contains", 32, answer_prefix=f"The value of {key} is", value_kind=kind, dense=dense)


def category(spec, rng: random.Random) -> Task:
    """Every city someone visited (2-6, count unknown), among as many or more cities named but not visited."""
    n = spec.n_needles or rng.randint(2, 6)
    cities = pool(X.TRAVEL_CITIES, spec.phrasing)
    n_dis = spec.n_distractors if spec.n_distractors is not None else rng.randint(n, n + 2)
    if n < 1 or n + n_dis > len(cities):
        raise UserError(f"category takes 1-{len(cities) // 2} visited cities with as many decoys: set --n-needles lower")
    chosen = rng.sample(cities, n + n_dis)
    people = [rng.choice(PEOPLE) for _ in chosen]
    visited, not_visited = pool(X.VISITED, spec.phrasing), pool(X.NOT_VISITED, spec.phrasing)
    ds = depths(rng, spec.depth, n)
    needles = [Needle(rng.choice(visited).format(p=p, city=c), d, "target", p, c) for p, c, d in zip(people, chosen, ds)]
    for p, c in zip(people[n:], chosen[n:]):
        needles.append(Needle(rng.choice(not_visited).format(p=p, city=c), rng.random(), "distractor", p, c))
    q = rng.choice(pool(X.CATEGORY_Q, spec.phrasing))
    return Task(needles, q, chosen[:n], "set", 32 + 8 * n, value_kind="city")


def narrative(spec, rng: random.Random) -> Task:
    """2 hops: X picks up the object in place A, X goes to B (answer B). 3 hops: X hands it to Y, then Y goes to C
    while X goes elsewhere. Facts in reading order; other people move and carry other objects around them."""
    hops = spec.hops or rng.choice([2, 3])
    if hops not in (2, 3):
        raise UserError(f"narratives have 2 or 3 hops, got {hops}: set --hops 2 or 3")
    objs = rng.sample(pool(X.OBJECTS, spec.phrasing), 2)
    obj, other_obj = objs
    a, b, c, d = _people(rng, 4)
    places = rng.sample(X.PLACES, 7)
    take, move, give = (pool(t, spec.phrasing) for t in (X.TAKE, X.MOVE, X.GIVE))
    ds = ordered_depths(rng, spec.depth, hops)
    facts = [(rng.choice(take).format(p=a, obj=obj, place=places[0]), a, places[0])]
    if hops == 2:
        facts.append((rng.choice(move).format(p=a, place=places[1]), a, places[1]))
        answer = places[1]
    else:
        facts.append((rng.choice(give).format(p=a, obj=obj, q=b), a, b))
        facts.append((rng.choice(move).format(p=b, place=places[1]), b, places[1]))
        answer = places[1]
    needles = [Needle(t, dp, "target", k, v) for (t, k, v), dp in zip(facts, ds)]
    after = ds[1] + (1 - ds[1]) * rng.random()  # the first carrier moves on without the object, later in the text
    needles.append(Needle(rng.choice(move).format(p=a if hops == 3 else b, place=places[2]), after if hops == 3 else rng.random(),
                          "distractor", a if hops == 3 else b, places[2]))
    t0 = rng.random() * 0.5
    needles.append(Needle(rng.choice(take).format(p=c, obj=other_obj, place=places[3]), t0, "distractor", c, places[3]))
    needles.append(Needle(rng.choice(move).format(p=c, place=places[4]), t0 + 0.5 * rng.random(), "distractor", c, places[4]))
    needles.append(Needle(rng.choice(move).format(p=d, place=places[5]), rng.random(), "distractor", d, places[5]))
    needles.append(Needle(rng.choice(move).format(p=d, place=places[6]), rng.random(), "distractor", d, places[6]))
    q = rng.choice(pool(X.WHERE_Q, spec.phrasing)).format(obj=obj)
    return Task(needles, q, [answer], "contains", 32, answer_prefix=f"The {obj} is in the", value_kind="place")
