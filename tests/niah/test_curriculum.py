"""The adaptive curriculum: ladders raise one knob at a time; rungs move up over `high`, down under `low`."""
import pytest

from longrecall.niah.curriculum import Adaptive, ladder


def test_ladders_go_from_easiest_to_hardest_one_step_at_a_time():
    rungs = ladder("chain", [2048, 512, 1024])
    assert rungs[0] == {"length": 512, "hops": 1} and rungs[-1] == {"length": 2048, "hops": 4}
    for a, b in zip(rungs, rungs[1:]):
        assert sum(a[k] != b[k] for k in a) == 1 and all(b[k] >= a[k] for k in a)
    assert ladder("single", [512, 1024]) == [{"length": 512}, {"length": 1024}]
    assert len(ladder("all_needles", [512])) == 5  # only the needle count moves
    assert ladder("all_needles", [512])[0] == {"length": 512, "n_needles": 1}  # the easiest rung: one needle


def test_levels_follow_success_both_ways_and_are_logged():
    c = Adaptive(["chain", "single"], [512, 1024, 2048], low=0.3, high=0.7, window=4)
    for _ in range(4):
        c.update("chain", 1.0)
    assert c.levels["chain"] == 1 and c.setting("chain") == {"length": 512, "hops": 2} and c.levels["single"] == 0
    for _ in range(3):
        assert c.update("chain", 0.0) is None  # a window must fill again before the next move
    event = c.update("chain", 0.0)
    assert event["level"] == 0 and event["from"] == 1 and c.history[-1] == event
    for _ in range(4):
        c.update("chain", 0.5)  # inside the band: stays
    assert c.levels["chain"] == 0
    assert c.metrics()["curriculum/chain/length"] == 512.0
    with pytest.raises(ValueError):
        Adaptive(["chain"], [512], low=0.8, high=0.2)
