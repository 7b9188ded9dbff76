"""The scorecard: plan and spread, resume, refusal of a changed config, intervals in the outputs, paired comparison."""
import json

import pytest

from longrecall.errors import UserError
from longrecall.eval import scorecard as SC
from longrecall.niah import scoring


class Scripted:
    """A fake backend for fast tests: answers right on even sample indices (by id), else 'I don't know'."""

    name, max_positions, batch_size = "scripted", 2048, 2

    def __init__(self, right_every=2):
        self.calls, self.right_every = 0, right_every

    def generate(self, samples, budget):
        self.calls += len(samples)
        return [", ".join(s.answers) if int(s.id.split("-S")[1].split("-")[0]) % self.right_every == 0 else "I don't know"
                for s in samples]


def _cfg(**kw):
    base = dict(rows=[{"name": "single", "task": "single", "needle_kinds": ["number", "word"]},
                      {"name": "chain", "task": "chain", "hops": [2, 3]}],
                lengths=[512, 1024, 4096], samples={512: 4, 1024: 3, 4096: 2}, haystacks=["prose", "noise"], batch_size=2)
    base.update(kw)
    return _build(base)


def _build(d):
    cfg = SC.ScorecardConfig(**{k: v for k, v in d.items() if k != "rows"})
    cfg.rows = [SC.Row(**r) for r in d["rows"]]
    return cfg


def test_the_shipped_config_loads_and_validates():
    cfg = SC.load_scorecard_config()
    assert cfg.version >= 1 and len(cfg.rows) >= 7 and len(cfg.depths) >= 5
    assert set(cfg.samples) == set(cfg.lengths) and cfg.phrasing == "heldout"


@pytest.mark.parametrize("name", ["configs/eval/scorecard.yaml", "configs/eval/scorecard-cpu.yaml", "configs/eval/scorecard-cpu-small.yaml"])
def test_every_row_of_the_shipped_configs_makes_samples(name, tok):
    from longrecall.niah import generate_sample

    cfg = SC.load_scorecard_config(name)
    for row in cfg.rows:
        for i in range(2):
            s = generate_sample(SC.spec_for(cfg, row, 512, i), tok)
            assert s.task == row.task and s.answers and all(a.lower() in s.context.lower() or s.task == "narrative" for a in s.answers)


def test_the_powered_config_meets_the_interval_target_and_the_cpu_one_extends_it():
    from longrecall.eval.stats import wilson

    full, cpu = SC.load_scorecard_config(), SC.load_scorecard_config("configs/eval/scorecard-cpu.yaml")
    for L in full.lengths:  # the worst case of a 0/1 cell: half right
        n = full.samples[L]
        lo, hi = wilson(n // 2, n)
        assert 100 * (hi - lo) / 2 <= (8.0 if L <= 4096 else 12.0) + 0.05
    assert [r.name for r in cpu.rows] == [r.name for r in full.rows] and cpu.seed == full.seed and cpu.depths == full.depths
    assert max(cpu.lengths) <= 8192 and SC.config_hash(cpu) != SC.config_hash(full)


def test_samples_spread_over_depths_haystacks_and_kinds():
    cfg = _cfg()
    specs = [SC.spec_for(cfg, cfg.rows[0], 1024, i) for i in range(4)]
    assert [s.haystack for s in specs] == ["prose", "noise", "prose", "noise"]
    assert [s.needle_kind for s in specs] == ["number", "word", "number", "word"]
    assert len({s.depth for s in specs}) == 4 and len({s.seed for s in specs}) == 4
    assert all(s.phrasing == "heldout" for s in specs)


def test_run_resume_and_outputs(tmp_path, tok):
    cfg = _cfg()
    b = Scripted()
    rows = SC.run_scorecard(cfg, tmp_path, backend=b, tokenizer=tok, progress=False)
    assert len(rows) == 2 * (4 + 3 + 2) and b.calls == 2 * (4 + 3)  # 4096 is beyond the fake's 2048 positions
    assert all(r["beyond_positions"] and r["score"] is None for r in rows if r["length"] == 4096)
    for r in rows:
        if r["score"] is not None:
            assert r["score"] == scoring.score(_sample_of(r, tok), r["answer"])
    again = SC.run_scorecard(cfg, tmp_path, backend=Scripted(), tokenizer=tok, progress=False)
    assert len(again) == len(rows)  # nothing re-asked
    summary = SC.summarize(rows, cfg)
    cell = summary["table"]["single"]["512"]
    assert cell["n"] == 4 and cell["method"] == "wilson" and cell["lo"] <= cell["mean"] <= cell["hi"]
    SC.write_outputs(tmp_path, summary, cfg, "test")
    md = (tmp_path / "scorecard.md").read_text()
    assert "[" in md and "Effective length" in md and (tmp_path / "scorecard.png").stat().st_size > 1000
    assert json.loads((tmp_path / "scorecard.json").read_text())["version"] == cfg.version


def _sample_of(row, tok):
    from longrecall.niah import generate_sample

    cfg = _cfg()
    r = {x.name: x for x in cfg.rows}[row["row"]]
    return generate_sample(SC.spec_for(cfg, r, row["length"], row["index"]), tok)


def test_a_resumed_run_with_a_changed_config_is_refused_and_nothing_is_overwritten(tmp_path, tok):
    SC.run_scorecard(_cfg(samples={512: 1, 1024: 1, 4096: 1}), tmp_path, backend=Scripted(), tokenizer=tok, progress=False)
    before = (tmp_path / "results.jsonl").read_bytes(), (tmp_path / "run.json").read_bytes()
    with pytest.raises(UserError, match=r"changed: seed\b"):
        SC.run_scorecard(_cfg(samples={512: 1, 1024: 1, 4096: 1}, seed=7), tmp_path, backend=Scripted(), tokenizer=tok, progress=False)
    rows = [{"name": "single", "task": "single", "needle_kinds": ["number"]}, {"name": "chain", "task": "chain", "hops": [2, 3]}]
    with pytest.raises(UserError, match=r"changed: rows\[single\]\.needle_kinds"):
        SC.run_scorecard(_cfg(samples={512: 1, 1024: 1, 4096: 1}, rows=rows), tmp_path, backend=Scripted(), tokenizer=tok,
                         progress=False)
    assert ((tmp_path / "results.jsonl").read_bytes(), (tmp_path / "run.json").read_bytes()) == before


def test_a_config_that_adds_a_row_asks_only_the_new_row(tmp_path, tok):
    small = dict(samples={512: 2, 1024: 1, 4096: 1})
    first = SC.run_scorecard(_cfg(rows=[{"name": "single", "task": "single", "needle_kinds": ["number", "word"]}], **small), tmp_path, backend=Scripted(),
                             tokenizer=tok, progress=False)
    b = Scripted()
    both = SC.run_scorecard(_cfg(**small), tmp_path, backend=b, tokenizer=tok, progress=False)
    assert b.calls == 2 + 1  # only chain's 512 and 1024 samples (4096 is beyond the fake's positions)
    assert [r for r in both if r["row"] == "single"] == first
    # The kept rows are the very samples a fresh run of the bigger config asks.
    fresh = SC.run_scorecard(_cfg(**small), tmp_path / "fresh", backend=Scripted(), tokenizer=tok, progress=False)
    key = lambda r: (r["row"], r["length"], r["index"], r["id"], r["score"])  # noqa: E731
    assert sorted(map(key, both)) == sorted(map(key, fresh))


def test_a_config_that_grows_samples_or_lengths_asks_only_the_new_samples(tmp_path, tok):
    few = SC.run_scorecard(_cfg(lengths=[512], samples={512: 2}), tmp_path, backend=Scripted(), tokenizer=tok, progress=False)
    b = Scripted()
    more = SC.run_scorecard(_cfg(lengths=[512, 1024], samples={512: 3, 1024: 1}), tmp_path, backend=b, tokenizer=tok,
                            progress=False)
    assert b.calls == 2 * (1 + 1)  # per row: the third 512 sample and the 1024 one
    assert all(r in more for r in few)
    fresh = SC.run_scorecard(_cfg(lengths=[512, 1024], samples={512: 3, 1024: 1}), tmp_path / "fresh", backend=Scripted(),
                             tokenizer=tok, progress=False)
    key = lambda r: (r["row"], r["length"], r["index"], r["id"], r["score"])  # noqa: E731
    assert sorted(map(key, more)) == sorted(map(key, fresh))
    # Shrinking it back summarises only what the smaller config asks; nothing on disk is lost.
    back = SC.run_scorecard(_cfg(lengths=[512], samples={512: 2}), tmp_path, backend=Scripted(), tokenizer=tok, progress=False)
    assert sorted(map(key, back)) == sorted(map(key, few))
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == len(more)


def test_answers_saved_when_the_row_hash_held_samples_and_lengths_are_kept(tmp_path, tok):
    import dataclasses
    import hashlib

    cfg = _cfg(lengths=[512], samples={512: 2})
    first = SC.run_scorecard(cfg, tmp_path, backend=Scripted(), tokenizer=tok, progress=False)
    results = tmp_path / "results.jsonl"
    old_rows = []
    for r in map(json.loads, results.read_text().splitlines()):  # rewrite as the previous code hashed rows
        row = {x.name: x for x in cfg.rows}[r["row"]]
        blob = {"settings": SC._settings(cfg), "row": dataclasses.asdict(row)}
        r["row_hash"] = hashlib.sha1(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]
        old_rows.append(r)
    results.write_text("".join(json.dumps(r) + "\n" for r in old_rows))
    b = Scripted()
    grown = SC.run_scorecard(_cfg(lengths=[512], samples={512: 3}), tmp_path, backend=b, tokenizer=tok, progress=False)
    assert b.calls == 2 and len(grown) == len(first) + 2


def test_an_unknown_family_is_one_line_listing_the_known_ones(tmp_path, tok):
    cfg = _cfg(rows=[{"name": "x", "task": "needle_soup"}])
    with pytest.raises(UserError, match="use one of single"):
        SC.run_scorecard(cfg, tmp_path, backend=Scripted(), tokenizer=tok, progress=False)
    assert not (tmp_path / "results.jsonl").exists()


def test_compare_pairs_the_same_samples(tmp_path, tok):
    cfg = _cfg(samples={512: 6, 1024: 2, 4096: 1})
    a = SC.run_scorecard(cfg, tmp_path / "a", backend=Scripted(right_every=10**9), tokenizer=tok, progress=False)
    b = SC.run_scorecard(cfg, tmp_path / "b", backend=Scripted(right_every=1), tokenizer=tok, progress=False)
    lines = {(x["row"], x["length"]): x for x in SC.compare(a, b)}
    x = lines[("single", 512)]
    assert x["n"] == 6 and x["won"] == 6 and x["mean"] == 100.0 and x["significant"]
    assert ("single", 4096) not in lines  # never asked: nothing to pair
    pooled = lines[("single", "all")]  # the row over all its lengths: the most samples behind one paired number
    assert pooled["n"] == 6 + 2 and pooled["won"] == 8 and pooled["significant"]
    every = lines[(SC.ALL_ROWS, "all")]  # every row and length at once, each sample once
    assert every["n"] == sum(x["n"] for (r, L), x in lines.items() if L == "all" and r != SC.ALL_ROWS)
    assert list(lines)[-1] == (SC.ALL_ROWS, "all")
    summary = SC.summarize(b, cfg)
    assert summary["table"]["single"]["all"]["n"] == 8 and summary["table"]["single"]["all"]["mean"] == 100.0


def test_a_rerun_with_another_seed_is_compared_unpaired_and_agreement_is_read_off_the_interval(tmp_path, tok, capsys):
    import argparse

    cfg = _cfg(samples={512: 8, 1024: 2, 4096: 1})
    SC.run_scorecard(cfg, tmp_path / "s1", backend=Scripted(right_every=2), tokenizer=tok, progress=False)
    other = _cfg(samples={512: 8, 1024: 2, 4096: 1}, seed=2000)
    SC.run_scorecard(other, tmp_path / "s2", backend=Scripted(right_every=2), tokenizer=tok, progress=False)
    SC.run_scorecard(other, tmp_path / "never", backend=Scripted(right_every=10**9), tokenizer=tok, progress=False)

    def lines(b):
        args = argparse.Namespace(compare=[str(tmp_path / "s1"), str(tmp_path / b)])
        assert SC.compare_main(args, tmp_path / f"cmp-{b}") == 0
        got = json.loads((tmp_path / f"cmp-{b}" / "compare.json").read_text())
        assert got["mode"] == "unpaired"
        return {(x["row"], x["length"]): x for x in got["lines"]}

    same = lines("s2")  # the same model (half right) on other samples: every pooled row agrees
    assert all(x["agree"] and x["lo"] <= 0 <= x["hi"] for (r, L), x in same.items() if L == "all")
    assert same[("single", "all")]["n_a"] == 10 and same[("single", "all")]["n_b"] == 10
    worse = lines("never")  # a model that never answers: the rows disagree
    assert not worse[("single", "all")]["agree"] and worse[("single", "all")]["hi"] < 0
    assert "agree where the interval includes 0" in capsys.readouterr().out


def test_timing_says_where_the_time_went(tmp_path, tok):
    class Slow(Scripted):
        def generate(self, samples, budget):
            import time

            time.sleep(0.05 * len(samples))
            return super().generate(samples, budget)

    timing: dict = {}
    SC.run_scorecard(_cfg(samples={512: 2, 1024: 1, 4096: 1}), tmp_path, backend=Slow(), tokenizer=tok, progress=False, timing=timing)
    assert set(timing) == {"load", "samples", "answers"}
    assert timing["answers"] >= 0.05 * 2 * (2 + 1) - 0.05 and timing["samples"] > 0  # 6 answered samples, 4096 not asked
