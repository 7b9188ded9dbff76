"""Haystacks: prose variety (no repeated 200-token window), sentence splitting, noise."""
import numpy as np

from longrecall.niah import haystacks as H


def test_prose_has_no_repeated_200_token_window(tok):
    text = H.prose_text(12000, seed=0)  # ~128k tokens
    ids = np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    assert len(ids) > 120_000
    w = 200
    # hash every window with a rolling polynomial; equal hashes would flag a repeat
    base, mod = 1_000_003, (1 << 61) - 1
    h, seen, power = 0, set(), pow(base, w - 1, mod)
    ids = ids.tolist()
    for i, t in enumerate(ids):
        if i >= w:
            h = (h - (ids[i - w] + 1) * power) % mod
        h = (h * base + t + 1) % mod
        if i >= w - 1:
            assert h not in seen, f"repeated 200-token window ending at {i}"
            seen.add(h)


def test_prose_is_seeded_and_digit_free():
    assert H.prose_text(50, 1) == H.prose_text(50, 1) != H.prose_text(50, 2)
    assert not any(c.isdigit() for c in H.prose_text(2000, 3))


def test_split_sentences():
    assert H.split_sentences("One here. Two there!  Three?\n\nFour.") == ["One here.", "Two there!", "Three?", "Four."]


def test_noise_repeats_the_classic_sentences():
    stream = H.sentence_stream("noise", 0)
    assert [next(stream) for _ in range(6)] == H.NOISE + H.NOISE[:1]


def test_stdlib_is_real_training_text_disjoint_from_the_held_out_pkgdocs(tok):
    from longrecall.niah import GenSpec, generate_sample
    from longrecall.niah.haystacks import load_corpus

    train, held = load_corpus("stdlib"), load_corpus("pkgdocs")
    assert len(train) > 1000 and not set(train) & set(held)
    s = generate_sample(GenSpec(task="single", length=1024, haystack="user", corpus="stdlib", seed=1), tok)
    assert sum(sent in s.context for sent in train[:: max(1, len(train) // 2000)]) >= 1  # its sentences fill the haystack

