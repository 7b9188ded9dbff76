"""Evidence credit: cited sentences scored as F1 against the target needles, combined with the answer's score."""
import pytest

from longrecall.niah import GenSpec, generate_sample
from longrecall.niah import evidence as E

FAMILIES = ["single", "multikey", "all_needles", "chain", "vartrack", "nonliteral", "narrative", "category", "multiquery"]


def _answer(d: dict) -> str:
    return " -> ".join(d["chain"]) if d.get("chain") else ", ".join(d["answers"])


@pytest.mark.parametrize("task", FAMILIES)
def test_citing_the_targets_earns_full_credit_and_distractors_or_dumps_do_not(tok, task):
    d = generate_sample(GenSpec(task=task, length=1024, haystack="prose", seed=2), tok).to_dict()
    targets = [n["text"] for n in d["needles"] if n["role"] == "target"]
    others = [n["text"] for n in d["needles"] if n["role"] != "target"]
    assert E.credit(d, "Evidence:\n" + "\n".join(targets) + "\nAnswer: " + _answer(d), 0.5) == 1.0
    if others:  # the distractors, cited instead: no evidence credit at all
        assert E.details(d, "Evidence:\n" + "\n".join(others[: len(targets)]) + "\nAnswer: " + _answer(d), 0.5)["evidence_f1"] == 0.0
    dump = E.details(d, "Evidence:\n" + d["context"] + "\nAnswer: " + d["answers"][0], 0.5)
    assert dump["evidence_f1"] < 0.3  # copying the text: precision near 0


def test_split_and_no_evidence():
    assert E.split("Evidence:\nThe code is 5.\nAnswer: 5") == ("The code is 5.", "5")
    assert E.split("just 5") == ("", "just 5")
    d = {"needles": [{"text": "The code for ab-cd is 1234567.", "key": "ab-cd", "value": "1234567", "role": "target"}],
         "answers": ["1234567"], "metric": "contains", "task": "single"}
    assert E.details(d, "1234567", 0.5) == {"answer": 1.0, "evidence_f1": 0.0, "reward": 0.5}
    assert E.credit(d, "Evidence: ab-cd has the code 1234567.\nAnswer: 1234567", 0.5) == 1.0  # key + value named
    assert E.credit(d, "Evidence: the code is 7654321.\nAnswer: 1234567", 0.5) == 0.5
