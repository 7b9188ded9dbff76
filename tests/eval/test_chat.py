"""The ordinary-chat check: closed questions scored by containment, paired comparison, the CLI on a tiny model."""
import json
from argparse import Namespace

import pytest

from longrecall.errors import UserError
from longrecall.eval import chat


class Scripted:
    name = "scripted"

    def __init__(self, right: int):
        self.right = right

    def generate(self, prompts, max_new_tokens=40):
        out = []
        for i, p in enumerate(prompts):
            q = p[0]["content"]
            accepted = dict(chat.QUESTIONS)[q]
            out.append(f"It is {accepted[0].title()}." if i < self.right else "I am not sure.")
        return out


def test_containment_is_whole_word_and_case_blind():
    assert chat.correct("The capital is PARIS.", ["paris"]) and chat.correct("There are 7 days.", ["seven", "7"])
    assert not chat.correct("There are 17 days.", ["7"]) and not chat.correct("Parisian food", ["paris"])
    assert not chat.correct("", ["blue"])


def test_questions_are_many_distinct_and_each_has_an_answer():
    qs = [q for q, _ in chat.QUESTIONS]
    assert len(qs) >= 40 and len(set(qs)) == len(qs) and all(acc for _, acc in chat.QUESTIONS)
    from longrecall.data.retain import TRAIN_CHATS

    assert not set(qs) & set(TRAIN_CHATS)  # never trained on by LIFT's retain records


def test_run_and_paired_compare(tmp_path):
    n = len(chat.QUESTIONS)
    a = chat.run(Scripted(n), tmp_path / "a")
    b = chat.run(Scripted(n - 8), tmp_path / "b")
    assert a["accuracy"]["mean"] == 100.0 and round(b["accuracy"]["mean"], 1) == round(100 * (n - 8) / n, 1)
    r = chat.compare(tmp_path / "a", tmp_path / "b", tmp_path / "c")
    assert r["delta"]["lost"] == 8 and r["delta"]["won"] == 0 and r["delta"]["significant"]
    assert r["identical_answers"] == n - 8 and json.loads((tmp_path / "c" / "compare.json").read_text()) == r
    with pytest.raises(UserError, match="eval chat"):
        chat.compare(tmp_path / "a", tmp_path / "missing", tmp_path / "d")


def test_cli_on_a_tiny_model(tiny_dir, tmp_path, capsys):
    args = Namespace(model=str(tiny_dir), adapter=None, dtype="float32", max_new_tokens=4, compare=None, output_dir=str(tmp_path))
    assert chat.main(args) == 0
    rows = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert len(rows) == len(chat.QUESTIONS) and all(isinstance(r["answer"], str) for r in rows)
    assert "questions" in capsys.readouterr().out
