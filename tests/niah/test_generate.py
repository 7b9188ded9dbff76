"""The generator: exact lengths, needle placement and offsets, determinism, every family and haystack."""
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


def test_long_sample_is_fast_and_exact(tok):
    import time

    t = time.time()
    s = generate_sample(GenSpec(task="all_needles", length=131072, haystack="prose", seed=9, n_needles=16), tok)
    assert time.time() - t < 60
    assert 0 <= 131072 - (s.prompt_tokens + s.answer_budget) <= 131072 // 100


def test_training_samples_never_contain_heldout_names(tok):
    from longrecall.niah import needles as N

    held = [n for pair in N.NAMES.values() for n in pair[1]]
    for task in ("all_needles", "multikey", "single"):
        for seed in range(6):
            s = generate_sample(GenSpec(task=task, length=2048, haystack="needles", phrasing="train", seed=seed), tok)
            assert not any(h in s.context for h in held), (task, seed)
