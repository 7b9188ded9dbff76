"""Sliding-window perplexity: the window plan, equality with a hand-computed loss, the CLI on a tiny model."""
from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
import torch.nn.functional as F

from longrecall.errors import UserError
from longrecall.eval import perplexity as P

TEXT = ("The lighthouse keeper wrote every evening. The tide rose over the rocks and the gulls went quiet. "
        "In the morning the boat came with letters, flour and oil. ") * 3


def test_window_plan_scores_every_token_once():
    assert P.window_plan(10, 4, 2) == [(0, 4, 4), (2, 6, 2), (4, 8, 2), (6, 10, 2)]
    assert P.window_plan(3, 8, 2) == [(0, 3, 3)]
    assert P.window_plan(100, 8, 4, max_windows=3) == [(0, 8, 8), (4, 12, 4), (8, 16, 4)]
    with pytest.raises(UserError, match="stride"):
        P.window_plan(10, 4, 8)


@pytest.fixture(scope="module")
def model(tiny_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()


def _nll(model, ids):
    """Reference: full logits and torch's mean cross entropy over next tokens."""
    with torch.no_grad():
        logits = model(input_ids=ids[None]).logits[0]
    return F.cross_entropy(logits[:-1], ids[1:], reduction="none")


def test_single_window_equals_exp_of_mean_next_token_loss(model, tok):
    ids = torch.tensor(tok(TEXT, add_special_tokens=False)["input_ids"])
    res = P.perplexity(model, ids, length=len(ids) + 10, stride=4, chunk=7)
    assert res["windows"] == 1 and res["tokens_scored"] == len(ids) - 1 and res["ppl_long"] is None
    assert res["ppl"] == pytest.approx(math.exp(_nll(model, ids).mean().item()), rel=1e-5)


def test_sliding_windows_score_the_last_stride_tokens_with_the_window_as_context(model, tok):
    ids = torch.tensor(tok(TEXT, add_special_tokens=False)["input_ids"])[:40]
    length, stride = 16, 8
    first = _nll(model, ids[0:16])  # 15 targets
    later = [_nll(model, ids[b:b + length])[-stride:] for b in (8, 16, 24)]  # windows [8,24) [16,32) [24,40)
    nll_long = torch.cat(later)
    expected = math.exp(torch.cat([first, nll_long]).mean().item())
    res = P.perplexity(model, ids, length, stride, max_windows=None, chunk=5)
    assert res["windows"] == 4 and res["tokens_scored"] == 15 + 24
    assert res["ppl"] == pytest.approx(expected, rel=1e-5)
    assert res["ppl_long"] == pytest.approx(math.exp(nll_long.mean().item()), rel=1e-5)


def test_cli_writes_json_and_plot(tiny_dir, tmp_path, capsys):
    text = tmp_path / "book.txt"
    text.write_text(TEXT * 4)
    parser = argparse.ArgumentParser()
    P.add_arguments(parser)
    out = tmp_path / "ppl"
    args = parser.parse_args(["--model", str(tiny_dir), "--lengths", "32,64", "--stride", "16", "--max-windows", "3",
                              "--text", str(text), "--dtype", "float32", "--output-dir", str(out)])
    assert P.main(args) == 0
    data = json.loads((out / "perplexity.json").read_text())
    assert [r["length"] for r in data["results"]] == [32, 64] and all(r["windows"] == 3 for r in data["results"])
    assert (out / "perplexity.png").stat().st_size > 0 and "length 64: ppl" in capsys.readouterr().out
    with pytest.raises(UserError, match="longer --text"):
        P.main(parser.parse_args(["--model", str(tiny_dir), "--lengths", "100000", "--text", str(text), "--output-dir", str(out)]))


def test_heldout_prose_is_long_enough_and_seeded(tok):
    a = P.heldout_tokens(tok, 700)
    assert len(a) == 700 and a == P.heldout_tokens(tok, 700) and a != P.heldout_tokens(tok, 700, seed=1)


def test_pkgdocs_is_real_text_from_the_installed_packages(tiny_dir, tmp_path):
    parser = argparse.ArgumentParser()
    P.add_arguments(parser)
    out = tmp_path / "docs"
    args = parser.parse_args(["--model", str(tiny_dir), "--lengths", "64", "--stride", "32", "--max-windows", "2",
                              "--text", "pkgdocs", "--dtype", "float32", "--output-dir", str(out)])
    assert P.main(args) == 0
    data = json.loads((out / "perplexity.json").read_text())
    assert data["text"] == "pkgdocs" and data["results"][0]["windows"] == 2


def test_compare_pairs_windows_and_refuses_different_runs(tiny_dir, tmp_path, capsys):
    text = tmp_path / "book.txt"
    text.write_text(TEXT * 4)
    parser = argparse.ArgumentParser()
    P.add_arguments(parser)
    common = ["--lengths", "32,64", "--stride", "16", "--max-windows", "4", "--text", str(text), "--dtype", "float32"]
    assert P.main(parser.parse_args(["--model", str(tiny_dir), *common, "--output-dir", str(tmp_path / "a")])) == 0
    assert P.main(parser.parse_args(["--model", str(tiny_dir), *common, "--output-dir", str(tmp_path / "b")])) == 0
    a = json.loads((tmp_path / "a" / "perplexity.json").read_text())
    r = a["results"][0]
    assert math.exp(sum(r["window_nll"]) / sum(r["window_tokens"])) == pytest.approx(r["ppl"], rel=1e-9)
    same = P.compare(a, a)
    assert [x["length"] for x in same] == [32, 64] and all(x["change_pct"] == x["lo"] == x["hi"] == 0 for x in same)
    worse = json.loads(json.dumps(a))  # every window 10% more loss per token: perplexity rises by exp(0.1 * nll/token)
    for res in worse["results"]:
        res["window_nll"] = [v * 1.1 for v in res["window_nll"]]
    line = P.compare(a, worse)[0]
    expected = 100 * (math.exp(0.1 * sum(r["window_nll"]) / sum(r["window_tokens"])) - 1)
    assert line["change_pct"] == pytest.approx(expected) and line["lo"] > 0
    assert P.main(parser.parse_args(["--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--output-dir", str(tmp_path / "c")])) == 0
    assert "B / A +0.0%" in capsys.readouterr().out and (tmp_path / "c" / "compare.md").exists()
    other = {**a, "stride": 8}
    with pytest.raises(UserError, match="differ in stride"):
        P.compare(a, other)
    with pytest.raises(UserError, match="does not exist"):
        P.main(parser.parse_args(["--compare", str(tmp_path / "a"), str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "d")]))
