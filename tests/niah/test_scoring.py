"""Golden tests for the metrics: each pins a behaviour the reward depends on."""
import pytest

from longrecall.niah import scoring as S


def _sample(metric, answers, chain=(), value_kind="number", needles=()):
    return {"metric": metric, "answers": list(answers), "chain": list(chain), "value_kind": value_kind, "needles": list(needles)}


@pytest.mark.parametrize(
    "text,expected",
    [("The answer is 1,234,567.", "the answer is 1234567"), ("  UUID: ABC-def!  ", "uuid abc def"), ("Room B12.", "room b12")],
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


def test_score_is_bounded_and_handles_none():
    s = _sample("set", ["1111111"])
    assert S.score(s, None) == 0.0
    d = S.score_details(s, "1111111")
    assert d["score"] == 1.0 and d["f1"] == 1.0 and d["exact"] == 1.0


def test_word_and_var_candidates_use_the_matching_normaliser():
    assert S.candidates("Banjo, tulip and the dog", "word") == {"banjo", "tulip"}
    assert S.candidates("banjo-tulip", "word") == {"banjo", "tulip"}  # a hyphen is a boundary, as in matching
    assert S.candidates("VAR ABCDE and QWERT", "var") == {"abcde", "qwert"}


# --- The review's findings (issue 12): each failed on the reward of generator version 1. ---

def _kv(metric, answers, distractors, kind="number", question="What is it?"):
    needles = [{"role": "target", "key": f"k{i}", "value": a} for i, a in enumerate(answers)]
    needles += [{"role": "distractor", "key": f"d{i}", "value": v} for i, v in enumerate(distractors)]
    return {"metric": metric, "answers": answers, "chain": [], "value_kind": kind, "needles": needles, "question": question}


def test_a_correct_answer_with_polite_filler_earns_full_reward():
    s = _kv("contains", ["1234567"], ["7654321", "1111111"], question="What is the code for brave-otter?")
    assert S.score(s, "The code for brave-otter is 1234567.") == 1.0
    assert S.score(s, "Sure! It is 1,234,567 :)") == 1.0


def test_naming_any_other_value_of_the_kind_costs_the_single_answer():
    s = _kv("contains", ["1234567"], ["7654321", "1111111"])
    assert S.score(s, "either 1234567 or 7654321") == 0.0  # hedging no longer earns a certain 0.5
    assert S.score(s, "1234567 (not 9999999)") == 0.0  # invented values are charged too
    assert S.score(s, "7654321") == 0.0


def test_multivalue_recall_now_has_precision():
    s = _kv("recall", ["1111111", "2222222"], ["3333333", "4444444"])  # version-1 files still score
    assert S.score(s, "1111111 2222222 3333333 4444444") == 0.0  # dumping every number of the context
    assert S.score(s, "1111111, 2222222") == 1.0
    assert S.score(s, "1111111, 2222222, 3333333") == 0.5  # each wrong value cancels one right one


def test_a_hyphen_joined_or_lower_case_dump_is_charged():
    s = _kv("set", ["banjo", "tulip"], ["kiwi", "waffle"], kind="word")
    assert S.score(s, "banjo-tulip-kiwi-waffle") == 0.0
    s = {"metric": "set", "answers": ["ABCDE", "FGHIJ"], "chain": [], "value_kind": "var", "question": "Which hold 12345?",
         "needles": [{"role": "target", "key": "ABCDE", "value": "12345"}, {"role": "target", "key": "FGHIJ", "value": "ABCDE"},
                     {"role": "distractor", "key": "KLMNO", "value": "54321"}, {"role": "distractor", "key": "PQRST", "value": "KLMNO"}]}
    assert S.score(s, "abcde fghij klmno pqrst") == 0.0
    assert S.score(s, "VAR ABCDE and VAR FGHIJ hold 12345.") == 1.0  # the question's own value is never charged


def _chain(direction):
    needles = [
        {"role": "target", "key": "Alice", "value": "4417"}, {"role": "target", "key": "Alice", "value": "B123"},
        {"role": "target", "key": "Alice", "value": "Elmstead Hall"},
        {"role": "distractor", "key": "Bruno", "value": "5521"}, {"role": "distractor", "key": "Bruno", "value": "C456"},
        {"role": "distractor", "key": "Bruno", "value": "Northgate Tower"},
    ]
    if direction == "forward":
        return {"metric": "chain", "answers": ["Elmstead Hall"], "chain": ["4417", "B123", "Elmstead Hall"],
                "value_kind": "entity", "needles": needles, "question": "In which building is Alice's violin kept?"}
    return {"metric": "chain", "answers": ["Alice"], "chain": ["B123", "4417", "Alice"], "value_kind": "entity",
            "needles": needles, "question": "Whose violin is kept in Elmstead Hall?"}


def test_backward_chains_charge_other_people():
    s = _chain("backward")
    assert S.score(s, "Alice") == 1.0
    assert S.score(s, "Alice or Bruno") == 0.0  # distractor people are needle keys, charged all the same
    assert S.score(s, "Alice, Keiko, Liam, Marta") == 0.0  # and people of the generator's vocabulary


def test_forward_chains_give_hop_credit_only_when_nothing_wrong_is_named():
    s = _chain("forward")
    assert S.score(s, "Alice's violin: locker 4417, room B123, Elmstead Hall.") == 1.0
    assert S.score(s, "locker 4417, room B123, then I lost track") == 0.5
    assert S.score(s, "locker 4417 or 5521") == 0.0
    assert S.score(s, "Elmstead Hall, Northgate Tower, Bellmoor House") == 0.0
    assert S.score(s, "Valmora Kestrelby Dunmarsh Port Hollis Carrowvale") == 0.0  # every city, no context read


def test_a_uuid_cut_short_counts_as_a_wrong_value():
    s = _kv("contains", ["0b82154c-fb1c-4016-ae4a-635ffe739b25"], [], kind="uuid")
    assert S.score(s, "It is 0B82154C-FB1C-4016-AE4A-635FFE739B25.") == 1.0
    assert S.score(s, "0b82154c-fb1c-4016-ae4a-635ffe739b25, f0a7642b-fe4c-4425") == 0.0
    assert S.score(s, "0b82154c-fb1c-4016") == 0.0
