"""memory.walk: a hop-by-hop answer gives its last hop before the walk loops back."""
from longrecall.memory.walk import walked


def test_a_walk_answers_with_its_last_hop():
    assert walked("F376 -> 1015 -> Rosa") == ("Rosa", ["F376", "1015", "Rosa"])
    assert walked("B167 → Thornbury Station.") == ("Thornbury Station", ["B167", "Thornbury Station"])


def test_a_walk_that_loops_back_stops_before_the_repeat():
    assert walked("3286 -> L463 -> 3286 -> 3459 -> 3286") == ("L463", ["3286", "L463"])
    assert walked("H419 -> H419 -> locker -> 3988") == ("H419", ["H419"])


def test_plain_answers_and_nothing_are_left_alone():
    assert walked("It is room L463.") == ("It is room L463.", [])
    assert walked("") == ("", []) and walked(None) == (None, [])
    assert walked("-> ->") == ("-> ->", [])
