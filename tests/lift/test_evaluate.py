"""LIFT evaluation: held-out questions per target needle, and a clear error for inputs without named needles."""
import pytest

from longrecall.errors import UserError
from longrecall.lift.evaluate import needle_questions
from longrecall.niah import GenSpec, generate_sample
from longrecall.niah.needles import QUESTIONS_ONE


def test_one_heldout_question_per_target_needle(tok):
    s = generate_sample(GenSpec(task="multiquery", n_needles=4, length=2048, seed=3), tok).to_dict()
    qs = needle_questions(s)
    assert len(qs) == 4 and {q["answer"] for q in qs} == set(s["answers"])
    heldout_starts = [t.split("{")[0] for t in QUESTIONS_ONE[1]]
    assert all(any(q["question"].startswith(h) for h in heldout_starts) for q in qs)


def test_chain_only_inputs_are_refused(tok):
    s = generate_sample(GenSpec(task="chain", length=1024, seed=1), tok).to_dict()
    with pytest.raises(UserError, match="multiquery"):
        needle_questions(s)
