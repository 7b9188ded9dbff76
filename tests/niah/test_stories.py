"""The newer families: non-literal needles share no word with their question, narratives are answered by following
the facts in reading order, categories separate visited from merely named cities, key-value lines hide one record
among records, and the held-out halves of every word list stay out of training samples."""
import random
import re

import pytest

from longrecall.errors import UserError
from longrecall.niah import GenSpec
from longrecall.niah import lexicon as X
from longrecall.niah.families import get_family
from longrecall.niah.generate import generate_sample
from longrecall.niah.scoring import score

# An independent stop list (not the generator's): function words a question may share with a needle.
STOP = set(
    "a an the their they them this that these those of in on at to into onto from for with by about over under "
    "after before while is are was were be been has have had do does did would should could must can may will "
    "who whom whose which what where when why how if then than and or but not no some someone anyone every each "
    "all it its one ones there here back last week s".split()
)


def _content(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP}


def _stem(w: str) -> str:
    return w[:5]  # crude, and strict: bike/biker or store/stored share it; bike/bicycle do not


def _build(task, i, phrasing="heldout", **kw):
    spec = GenSpec(task=task, phrasing=phrasing, seed=i, depth=(i % 5) / 4, **kw)
    return get_family(task).build(spec, random.Random(f"{task}-{i}-{phrasing}"))


@pytest.mark.parametrize("phrasing", ["train", "grammar", "heldout", "any"])
@pytest.mark.parametrize("hops", [1, 2])
def test_no_content_word_of_a_target_needle_but_the_person_is_in_the_question(phrasing, hops):
    for i in range(300):
        t = _build("nonliteral", i, phrasing, hops=hops)
        person = t.needles[0].key
        q = _content(t.question) - {person.lower()}
        for n in t.needles:
            if n.role != "target":
                continue
            words = _content(n.text) - {person.lower()}
            shared = {w for w in words if _stem(w) in {_stem(x) for x in q}}
            assert not shared, f"{t.question!r} shares {shared} with {n.text!r}"
        assert person in t.question  # the entity itself is what the question names


def test_nonliteral_questions_ask_for_the_paraphrase_of_the_needle_word():
    """The question's item is the other word of the needle's lexicon pair, and only the asked person's needle
    carries the needle word for that person (a distractor has the same person with another item)."""
    pairs = {a: b for pr in X.NL_ITEMS[0] + X.NL_ITEMS[1] for a, b in (pr, pr[::-1])}
    for i in range(100):
        t = _build("nonliteral", i, hops=1)
        target = t.needles[0]
        word = next(w for w in pairs if re.search(rf"\b{w}\b", target.text))
        assert re.search(rf"\b{pairs[word]}\b", t.question)
        same_person = [n for n in t.needles[1:] if n.key == target.key]
        assert same_person and all(not re.search(rf"\b{word}\b", n.text) for n in same_person)
        assert t.answers == [target.value] and target.value in X.PLACES


def test_two_hop_nonliteral_needs_the_district_of_the_place():
    for i in range(50):
        t = _build("nonliteral", i, hops=2)
        place, district = t.chain
        assert t.answers == [district]
        assert any(n.role == "target" and place in n.text and district in n.text for n in t.needles)
        assert place not in t.question and district not in t.question


def _simulate(needles, obj):
    """Where the object is after reading the facts in order: it starts where it is picked up, moves with its carrier,
    and changes hands when given."""
    where, carrier, at = None, None, {}
    for n in needles:
        text = n["text"]
        m = re.search(r"(\w+) (?:moved|went|walked|headed|wandered)\b.* the (\w+)\.$", text)
        if obj in text and re.search(r"\b(took|picked|grabbed|lifted)\b", text):
            carrier = re.search(r"\b(" + "|".join(_PEOPLE) + r")\b", text).group(1)
            where = re.search(r"the (\w+)[,.]", text.replace(f"the {obj}", "")).group(1)
        elif obj in text and re.search(r"\b(handed|gave|passed|received)\b", text):
            names = re.findall(r"\b(" + "|".join(_PEOPLE) + r")\b", text)
            carrier = names[-1] if "received" not in text else names[0]
        elif m:
            at[m.group(1)] = m.group(2)
            if m.group(1) == carrier:
                where = m.group(2)
    return where


from longrecall.niah.chains import PEOPLE as _PEOPLE  # noqa: E402


@pytest.mark.parametrize("hops", [2, 3])
def test_narrative_answer_is_where_the_last_carrier_went_in_reading_order(tok, hops):
    for i in range(12):
        s = generate_sample(GenSpec(task="narrative", hops=hops, length=1024, haystack="prose", phrasing=["train", "heldout"][i % 2],
                                    seed=i, depth=(i % 5) / 4), tok)
        obj = re.search(r"the (\w+)", s.question.split("find")[-1]).group(1)
        order = sorted(s.needles, key=lambda n: n["char_offset"])
        assert _simulate(order, obj) == s.answers[0], [n["text"] for n in order]
        assert score(s, f"The {obj} is in the {s.answers[0]}.") == 1.0
        first = [n for n in order if obj in n["text"]][0]["value"]  # where it was picked up: a wrong answer
        assert score(s, f"The {obj} is in the {first}.") == 0.0


def test_category_answers_are_the_visited_cities_and_decoys_are_only_named():
    visited = [re.compile(re.escape(t).replace(r"\{p\}", r"\w+").replace(r"\{city\}", r"(\w+)")) for t in X.VISITED[0] + X.VISITED[1]]
    for i in range(100):
        t = _build("category", i, ["train", "heldout"][i % 2])
        got = {m.group(1) for n in t.needles for r in visited if (m := r.fullmatch(n.text))}
        assert got == set(t.answers)
        decoys = [n for n in t.needles if n.role == "distractor"]
        assert len(decoys) >= len(t.answers)  # naming every city in the text earns nothing
        sample = {"answers": t.answers, "metric": "set", "value_kind": "city", "question": t.question,
                  "needles": [vars(n) for n in t.needles]}
        assert score(sample, ", ".join(n.value for n in t.needles)) == 0.0
        assert score(sample, ", ".join(t.answers)) == 1.0


def test_kvlines_hides_one_record_among_records_with_half_its_key(tok):
    s = generate_sample(GenSpec(task="kvlines", length=1024, haystack="needles", phrasing="heldout", seed=3, needle_kind="word"), tok)
    key = s.needles[0]["key"]
    adj, noun = key.split("-")
    assert s.context.count(f"{key}") == 1
    assert sum(1 for n in s.needles[1:] if n["key"].startswith(adj + "-") or n["key"].endswith("-" + noun)) == len(s.needles) - 1
    assert s.context.count(";") > 30  # the haystack is itself records


@pytest.mark.parametrize("phrasing", ["train", "grammar"])
@pytest.mark.parametrize("task", ["nonliteral", "category", "narrative", "kvlines"])
def test_training_samples_never_hold_a_held_out_word(task, phrasing):
    held = {w.lower() for pair in X.NL_ITEMS[1] for w in pair} | {w.lower() for w in X.DISTRICTS[1] + X.OBJECTS[1] + X.TRAVEL_CITIES[1]}
    for i in range(100):
        t = _build(task, i, phrasing)
        words = _content(" ".join([t.question] + [n.text for n in t.needles]))
        assert not words & held, words & held


def test_word_list_halves_are_disjoint():
    for train, held in [X.DISTRICTS, X.OBJECTS, X.TRAVEL_CITIES]:
        assert not set(train) & set(held)
    train_words = {w for p in X.NL_ITEMS[0] for w in p}
    assert not train_words & {w for p in X.NL_ITEMS[1] for w in p}


@pytest.mark.parametrize("task,hops", [("nonliteral", 3), ("narrative", 1)])
def test_unsupported_hops_are_one_line_errors(task, hops):
    with pytest.raises(UserError, match="--hops"):
        _build(task, 0, hops=hops)
