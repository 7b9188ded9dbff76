"""Golden tests for the metrics: each pins a behaviour the reward depends on."""
import pytest

from longrecall.niah import scoring as S


def _sample(metric, answers, chain=(), value_kind="number", needles=()):
    return {"metric": metric, "answers": list(answers), "chain": list(chain), "value_kind": value_kind, "needles": list(needles)}


@pytest.mark.parametrize(
    "text,expected",
    [("The answer is 1,234,567.", "the answer is 1234567"), ("  UUID: ABC-def!  ", "uuid abc-def"), ("Room B12.", "room b12")],
)
def test_normalize(text, expected):
    assert S.normalize(text) == expected


def test_found_respects_token_boundaries():
    assert S.found("1234567", "it is 1234567.")
    assert not S.found("1234567", "it is 12345678")
    assert S.found("Elmstead Hall", "In ELMSTEAD HALL, I think")
    assert not S.found("", "anything")


def test_exact_and_substring():
    assert S.exact_match("  1234567. ", ["1234567"]) == 1.0
    assert S.exact_match("It is 1234567", ["1234567"]) == 0.0
    assert S.substring_all("a 1111111 and 2222222", ["1111111", "2222222", "3333333"]) == pytest.approx(2 / 3)
    assert S.substring_any("nothing here", ["1111111"]) == 0.0


def test_set_f1_counts_invented_values():
    refs = ["1111111", "2222222", "3333333", "4444444"]
    assert S.set_prf("1111111, 2222222, 3333333, 4444444", refs, "number") == (1.0, 1.0, 1.0)
    p, r, f = S.set_prf("1111111, 2222222, 3333333, 9999999", refs, "number")
    assert (p, r) == (0.75, 0.75) and f == pytest.approx(0.75)
    p, r, f = S.set_prf("1111111", refs, "number")
    assert (p, r) == (1.0, 0.25) and f == pytest.approx(0.4)
    assert S.set_prf("I don't know", refs, "number") == (0.0, 0.0, 0.0)


def test_chain_partial_credit_per_hop():
    chain = ["4417", "B12", "Elmstead Hall"]
    assert S.chain_credit("It is in Elmstead Hall.", "Elmstead Hall", chain) == 1.0
    assert S.chain_credit("locker 4417, room B12, then I lost track", "Elmstead Hall", chain) == 0.5
    assert S.chain_credit("locker 4417", "Elmstead Hall", chain) == 0.25
    assert S.chain_credit("room B12", "Elmstead Hall", chain) == 0.0  # hops count from the start only


def test_reward_halves_when_a_distractor_is_also_named():
    needles = [{"role": "target", "value": "1234567"}, {"role": "distractor", "value": "7654321"}]
    s = _sample("contains", ["1234567"], needles=needles)
    assert S.score(s, "1234567") == 1.0
    assert S.score(s, "either 1234567 or 7654321") == 0.5
    assert S.score(s, "7654321") == 0.0


def test_score_is_bounded_and_handles_none():
    s = _sample("set_f1", ["1111111"])
    assert S.score(s, None) == 0.0
    d = S.score_details(s, "1111111")
    assert d["score"] == 1.0 and d["f1"] == 1.0 and d["exact"] == 1.0


def test_word_and_var_candidates():
    assert S.candidates("Banjo, tulip and the dog", "word") == {"banjo", "tulip"}
    assert S.candidates("VAR ABCDE and QWERT but not abcde", "var") == {"ABCDE", "QWERT"}
