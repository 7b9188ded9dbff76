"""The phrasing grammar: many training forms per meaning, none of them a held-out form, and the old pools unchanged."""
import re

import pytest

from longrecall.niah import GenSpec, generate_sample
from longrecall.niah import grammar as G
from longrecall.niah import needles as N
from longrecall.niah.generate import INSTRUCTIONS, SYSTEMS

PAIRS = {"needle": N.NEEDLE_TEMPLATES, "question_one": N.QUESTIONS_ONE, "question_all_of_key": N.QUESTIONS_ALL_OF_KEY,
         "question_every": N.QUESTIONS_EVERY, "system": SYSTEMS, "instruction": INSTRUCTIONS}
PAIRS |= {f"name_{k}": pair for k, pair in N.NAMES.items()}
RELATIONS = {name: pair for name, (pair, _) in G._relation_pairs().items()}
WORD_PAIRS = {"nl_items"}  # pools of (needle word, question word), not sentences
PAIRS |= {name: pair for name, pair in RELATIONS.items() if name not in WORD_PAIRS}


def _grams(text: str, n: int = 4) -> set[tuple]:
    words = re.findall(r"\{\w+\}|[a-z']+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_the_grammar_grows_every_pool_and_keeps_the_train_forms():
    grown = G.pools()
    assert set(grown) == set(PAIRS) | WORD_PAIRS
    for name, pair in (PAIRS | RELATIONS).items():
        assert grown[name][: len(pair[0])] == list(pair[0]), name
        assert len(set(grown[name])) == len(grown[name]) > len(pair[0]), name
    assert len(grown["needle"]) >= 100 and len(grown["question_one"]) >= 200


def test_no_grown_form_is_or_echoes_a_held_out_form():
    held = [h for pair in PAIRS.values() for h in pair[1]]
    held_grams = set().union(*(_grams(h) for h in held))
    train_grams = set().union(*(_grams(t) for pair in PAIRS.values() for t in pair[0]))
    for name, forms in G.pools().items():
        for form in forms if name not in WORD_PAIRS else ():
            assert form not in held, form
            assert not (_grams(form) & held_grams) - train_grams, form  # no 4-word run of a held-out form
    for kind, (_, held_names) in N.NAMES.items():
        for name in G.pools()[f"name_{kind}"]:
            assert not any(h in name or name in h for h in held_names), name


def test_grown_forms_fill_with_every_slot():
    for form in G.pools()["needle"]:
        text = N.needle_sentence(form, "door code", "brave-otter", "1234567")
        assert "brave-otter" in text and "1234567" in text and "door code" in text and "{" not in text, form
        assert text[0].isupper() and text.endswith("."), text


def test_grammar_samples_use_grown_forms_and_old_pools_are_unchanged(tok):
    questions = set()
    for seed in range(12):
        s = generate_sample(GenSpec(task="single", length=512, haystack="noise", phrasing="grammar", seed=seed), tok)
        assert s.answers[0] in s.context and s.phrasing == "grammar"
        questions.add(s.question)
    assert len(questions) == 12  # twelve seeds, twelve different wordings (a 5-form pool would repeat)
    spec = dict(task="multikey", length=1024, haystack="prose", seed=5)
    a, b = (generate_sample(GenSpec(phrasing=p, **spec), tok) for p in ("train", "heldout"))
    assert a.system in SYSTEMS[0] and b.system in SYSTEMS[1] and a.instruction in INSTRUCTIONS[0]
    assert generate_sample(GenSpec(phrasing="train", **spec), tok).prompt_tokens == a.prompt_tokens


def test_sft_answers_name_the_needle_in_grammar_samples(tok):
    from longrecall.data import sft

    for seed in range(4):
        for task in ("single", "multiquery", "all_needles"):
            s = generate_sample(GenSpec(task=task, length=1024, haystack="noise", phrasing="grammar", seed=seed), tok)
            view = sft.view_of(s)
            assert view.name and view.name in s.needles[0]["text"], (task, s.needles[0]["text"])


def test_training_samples_never_show_a_held_out_name_even_as_a_distractor(tok):
    """Every family and haystack, train and grammar phrasings: no held-out needle name anywhere in the prompt (a
    distractor named 'vault combination' would teach the model to skip the held-out name it is later asked for)."""
    from longrecall.niah import FAMILIES

    held = [h.lower() for _, pool in N.NAMES.values() for h in pool]
    for phrasing in ("train", "grammar"):
        for task in FAMILIES:
            for haystack in ("needles", "prose"):
                for seed in range(3):
                    s = generate_sample(GenSpec(task=task, length=768, haystack=haystack, phrasing=phrasing, seed=seed), tok)
                    text = f"{s.system} {s.user_message()}".lower()
                    assert not [h for h in held if h in text], (phrasing, task, haystack, seed)


def test_grown_word_pairs_hold_no_held_out_word_and_share_no_stem():
    from longrecall.niah import chains as C
    from longrecall.niah import lexicon as X

    pairs = G.pools()["nl_items"]
    assert len(pairs) >= 40 and len(set(pairs)) == len(pairs)
    held = {w for p in X.NL_ITEMS[1] for w in p}
    taken = set(X.PLACES) | {w for i in C.ITEMS for w in i.split()} | set(X.OBJECTS[0] + X.OBJECTS[1])
    words = [w for p in pairs for w in p]
    assert len(set(words)) == len(words), "a word in two pairs makes two answers right"
    for a, b in pairs:
        assert a[:5] != b[:5] and a not in b and b not in a, (a, b)
        assert not {a, b} & held, (a, b)
    for a, b in pairs[len(X.NL_ITEMS[0]):]:  # the grown ones also avoid places, chain items and narrative objects
        assert not {a, b} & taken, (a, b)


@pytest.mark.parametrize("family", ["chain", "nonliteral"])
def test_grammar_relation_samples_vary_their_wording_and_stay_answerable(family):
    import random

    from longrecall.niah.families import get_family
    from longrecall.niah.scoring import score

    questions = set()
    for i in range(40):
        spec = GenSpec(task=family, phrasing="grammar", seed=i, hops=2 if family == "chain" else 1)
        t = get_family(family).build(spec, random.Random(f"g-{family}-{i}"))
        questions.add(t.question)
        assert "{" not in t.question and all("{" not in n.text for n in t.needles)
        sample = {"metric": t.metric, "answers": list(t.answers), "chain": list(t.chain)}
        assert score(sample, t.answers[0]) == 1.0
    assert len(questions) >= 30  # the train pool alone has 2-3 forms
