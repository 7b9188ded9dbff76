import json
from argparse import Namespace

import pytest

from longrecall.errors import UserError
from longrecall.lift.compare import compare, main


def _eval(folder, right: set[int], n: int = 10, prefix: str = "Q"):
    folder.mkdir(parents=True)
    rows = [{"question": f"{prefix}{i}?", "adapter_none": {"answer": "x", "correct": i in right},
             "adapter_truncated": {"answer": "x", "correct": False}} for i in range(n)]
    (folder / "questions.json").write_text(json.dumps(rows))
    return folder


def test_compare_pairs_by_question_and_claims_only_an_interval_clear_of_zero(tmp_path, capsys):
    a = _eval(tmp_path / "a", {0, 1})
    b = _eval(tmp_path / "b", set(range(10)))
    r = compare(a, b)["measures"]
    assert (r["no context"]["a"], r["no context"]["b"], r["no context"]["mean"]) == (20, 100, 80)
    assert (r["no context"]["won"], r["no context"]["lost"]) == (8, 0) and r["no context"]["significant"]
    assert r["truncated context"]["mean"] == 0 and not r["truncated context"]["significant"]
    main(Namespace(a=str(a), b=str(b), output_dir=str(tmp_path / "out")))
    assert "| no context | 10 | 20 | 100 | +80.0" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["measures"]["no context"]["won"] == 8


def test_compare_refuses_two_inputs_and_names_the_folder_it_needs(tmp_path):
    a = _eval(tmp_path / "a", {0})
    with pytest.raises(UserError, match="share no question"):
        compare(a, _eval(tmp_path / "b", {0}, prefix="Other"))
    with pytest.raises(UserError, match="lift eval --output-dir"):
        compare(a, tmp_path / "missing")
