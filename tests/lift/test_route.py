"""lift.route: which questions open a LIFT adapter (names, identifiers, long numbers the input holds)."""
from __future__ import annotations

from longrecall.lift.route import entities, route, vocabulary

INPUT = ("The river ran past the old mill. Note that the pass key assigned to courageous-umbrella is 4325325. "
         "Kofi chained his bike in the yard behind the bakery. Locker K41 stays shut.")


def test_entities_are_names_identifiers_and_long_numbers_not_sentence_openers_or_small_numbers():
    assert entities("What is the pass key for courageous-umbrella?") == ["courageous-umbrella"]
    assert entities("Where would you look for the bicycle that belongs to Kofi?") == ["kofi"]
    assert entities("Which room holds Kofi's drum kit, K41 or run_7?") == ["kofi", "k41", "run_7"]
    assert entities("Is 4325325 the code?") == ["4325325"]
    assert entities("What is 12 plus 7?") == []
    assert entities("How many days are there in a week?") == []
    assert entities("Where is it? Tell me. I think NASA knows.") == ["nasa"]


def test_route_opens_for_what_the_input_names_and_stays_shut_otherwise():
    vocab = vocabulary(INPUT)
    assert route("What is the pass key for courageous-umbrella?", vocab) == (True, ["courageous-umbrella"])
    assert route("Where would you look for the bicycle that belongs to Kofi?", vocab) == (True, ["kofi"])
    assert route("What is the pass key for brave-otter?", vocab) == (False, [])  # a key never ingested
    assert route("What is the capital of France?", vocab) == (False, [])  # an ordinary chat
    assert route("How many days are there in a week?", vocab) == (False, [])  # names nothing
    assert route("What is the code for umbrella-courageous?", vocab)[0] is False  # parts held, the key is not
