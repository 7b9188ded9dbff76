"""The generator: exact lengths, needle placement and offsets, determinism, every family and haystack."""
import os

import numpy as np
import pytest

from longrecall.errors import UserError
from longrecall.niah import FAMILIES, GenSpec, Sample, generate_sample, score
from longrecall.niah.generate import _template
from longrecall.niah import tokens as T


def _measure(tok, s: Sample) -> int:
    prompt = _template(tok, s.system, s.user_message()) + s.answer_prefix
    return len(tok(prompt, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("task", list(FAMILIES))
@pytest.mark.parametrize("haystack", ["noise", "prose", "needles"])
def test_every_family_fits_its_length(tok, task, haystack):
    for length in (1024, 3000):
        s = generate_sample(GenSpec(task=task, length=length, depth=0.4, haystack=haystack, seed=3), tok)
        total = _measure(tok, s) + s.answer_budget
        assert total <= length and length - total <= max(16, length // 100), (task, haystack, length, total)
        assert s.prompt_tokens == _measure(tok, s)
        assert s.answers and all(a for a in s.answers)
        targets = [n for n in s.needles if n["role"] == "target"]
        assert targets and all(n["text"] in s.context for n in s.needles)


def test_needle_token_offsets_point_at_the_needle(tok):
    s = generate_sample(GenSpec(task="multikey", length=2048, depth=0.5, haystack="prose", seed=1), tok)
    prompt = _template(tok, s.system, s.user_message())
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    for n in s.needles:
        window = tok.decode(ids[n["token_offset"]: n["token_offset"] + 40])
        assert n["text"][:20].strip() in window


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_depth_places_the_first_target(tok, depth):
    s = generate_sample(GenSpec(task="single", length=4096, depth=depth, haystack="prose", seed=0), tok)
    (n,) = s.needles
    assert abs(n["depth"] - depth) < 0.05
    # inserted at a sentence boundary: what precedes the needle ends a sentence
    before = s.context[: n["char_offset"]].rstrip()
    assert before == "" or before[-1] in ".!?"


def test_same_seed_same_sample_other_seed_other_sample(tok):
    a = generate_sample(GenSpec(task="chain", length=1500, seed=7, haystack="prose"), tok).to_dict()
    b = generate_sample(GenSpec(task="chain", length=1500, seed=7, haystack="prose"), tok).to_dict()
    c = generate_sample(GenSpec(task="chain", length=1500, seed=8, haystack="prose"), tok).to_dict()
    assert a == b and a["context"] != c["context"]
    assert Sample.from_dict(a).to_dict() == a


def test_reference_answer_scores_one_and_nonsense_zero(tok):
    for task in FAMILIES:
        s = generate_sample(GenSpec(task=task, length=2048, seed=5, haystack="noise"), tok)
        assert score(s, ", ".join(s.answers)) == 1.0, task
        assert score(s, "I could not find it.") == 0.0, task


def test_chain_structure(tok):
    for direction in ("forward", "backward"):
        for hops in (1, 2, 3, 4):
            s = generate_sample(GenSpec(task="chain", length=2048, hops=hops, direction=direction, seed=hops), tok)
            assert len(s.chain) == hops and s.chain[-1] == s.answers[0]
            assert sum(n["role"] == "target" for n in s.needles) == hops
            # distractor chains share the person's name (another item)
            assert any(n["role"] == "distractor" and n["key"] == s.needles[0]["key"] for n in s.needles)


def test_all_needles_count_and_heldout_phrasing(tok):
    s = generate_sample(GenSpec(task="all_needles", length=8192, n_needles=20, phrasing="heldout", seed=2), tok)
    assert len(s.answers) == 20 and len({n["value"] for n in s.needles}) == len(s.needles)
    t = generate_sample(GenSpec(task="all_needles", length=8192, n_needles=20, phrasing="train", seed=2), tok)
    assert s.question != t.question


def test_user_corpus_haystack(tok, tmp_path):
    (tmp_path / "a.txt").write_text("Ships sailed at dawn. The harbour was calm!\n\nGulls cried over the water. " * 50)
    (tmp_path / "b.jsonl").write_text('{"text": "A second file adds more sentences. They are short."}\n')
    s = generate_sample(GenSpec(task="single", length=1024, haystack="user", corpus=str(tmp_path)), tok)
    assert "Gulls cried" in s.context and s.prompt_tokens + s.answer_budget <= 1024


@pytest.mark.parametrize(
    "spec,fix",
    [
        (GenSpec(task="nope"), "use one of"),
        (GenSpec(haystack="ocean"), "use one of"),
        (GenSpec(depth=1.5), "fraction"),
        (GenSpec(task="all_needles", length=300, n_needles=30), "raise --length"),
        (GenSpec(haystack="user"), "--corpus"),
    ],
)
def test_bad_input_is_one_line_user_error(tok, spec, fix):
    with pytest.raises(UserError) as e:
        generate_sample(spec, tok)
    assert fix in str(e.value) and "\n" not in str(e.value)


def test_empty_and_binary_corpus(tok, tmp_path):
    (tmp_path / "empty.txt").write_text("   ")
    with pytest.raises(UserError, match="holds no text"):
        generate_sample(GenSpec(haystack="user", corpus=str(tmp_path / "empty.txt")), tok)
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02abc")
    with pytest.raises(UserError, match="binary"):
        generate_sample(GenSpec(haystack="user", corpus=str(tmp_path / "bin.txt")), tok)


def test_chunked_encoding_equals_whole_encoding(tok):
    from longrecall.niah.haystacks import prose_text

    text = prose_text(3000, 1)
    ids, starts = T._chunked(tok, text, 5000)
    whole_ids, whole_starts = T._whole(tok, text)
    assert (ids == whole_ids).all() and (starts == whole_starts).all()


def test_long_sample_is_exact(tok):  # its speed is measured in benchmarks/bench_generate.py, not here
    s = generate_sample(GenSpec(task="all_needles", length=131072, haystack="prose", seed=9, n_needles=16), tok)
    assert 0 <= 131072 - (s.prompt_tokens + s.answer_budget) <= 131072 // 100


@pytest.mark.parametrize("task", ["single", "multikey", "all_needles", "chain"])
def test_spliced_tokens_give_the_samples_of_a_whole_encode(tok, monkeypatch, task):
    """The fast path (haystack token starts reused, only the pieces around needles and template encoded) gives the
    same samples as tokenizing every prompt whole, at every depth, including needles at the very start and end."""
    from longrecall.niah import generate as G

    specs = [GenSpec(task=task, length=n, depth=d, haystack=h, seed=5) for n in (1500, 70000) for d in (0.0, 0.5, 1.0)
             for h in ("prose", "noise")]
    fast = [generate_sample(s, tok).to_dict() for s in specs]
    G._CACHE.clear()
    monkeypatch.setattr(T, "encode_spliced", lambda tok_, text, *a, **k: T.encode(tok_, text)[1])
    monkeypatch.setattr(T, "cached_starts", lambda tok_, text: T.encode(tok_, text)[1])
    slow = [generate_sample(s, tok).to_dict() for s in specs]
    G._CACHE.clear()
    assert fast == slow


def test_spliced_encode_falls_back_when_a_cut_is_not_a_token_start(tok):
    text = "Alpha beta gamma delta. " * 40
    wrong = T.encode(tok, text)[1] + 1  # a source whose token starts do not match its text
    assert (T.encode_spliced(tok, text, [(0, 0, len(text))], text, wrong) == T.encode(tok, text)[1]).all()


def test_token_cache_is_reused_across_processes_and_repaired(tok, tmp_path, monkeypatch):
    from longrecall.niah.haystacks import prose_text

    monkeypatch.setenv("LONGRECALL_TOKEN_CACHE", str(tmp_path))
    text = prose_text(8000, 2)
    assert len(text) >= T.CACHE_MIN_CHARS
    first = T.cached_starts(tok, text)
    (path,) = list(tmp_path.glob("*.npy"))
    again = T.cached_starts(tok, text)
    assert isinstance(again, np.memmap) and (again == first).all()  # read back, not re-encoded
    assert (first == T.encode(tok, text)[1]).all()
    path.write_bytes(b"truncated")  # a damaged file is encoded again and replaced
    assert (T.cached_starts(tok, text) == first).all() and path.stat().st_size > 100
    T.cached_starts(tok, text + " More.")  # another text: another file
    assert len(list(tmp_path.glob("*.npy"))) == 2
    os.utime(path, ns=(10**9, 10**9))  # the first file written long ago, whatever the filesystem's clock granularity
    (newest,) = [f for f in tmp_path.glob("*.npy") if f != path]
    T._prune(tmp_path, limit=newest.stat().st_size)  # room for one file: the older goes, the newest stays
    assert list(tmp_path.glob("*.npy")) == [newest]
    monkeypatch.setenv("LONGRECALL_TOKEN_CACHE", "off")
    T.cached_starts(tok, text + " Other.")
    assert len(list(tmp_path.glob("*.npy"))) == 1


def test_training_samples_never_contain_heldout_names(tok):
    from longrecall.niah import needles as N

    held = [n for pair in N.NAMES.values() for n in pair[1]]
    for task in ("all_needles", "multikey", "single"):
        for seed in range(6):
            s = generate_sample(GenSpec(task=task, length=2048, haystack="needles", phrasing="train", seed=seed), tok)
            assert not any(h in s.context for h in held), (task, seed)
