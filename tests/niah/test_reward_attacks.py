"""The reward cannot be gamed: answers that never read the question earn little on every family.

200 generated samples per family (every haystack, needle kind, phrasing pool and depth); each attack's answer is cut
to the sample's answer budget in tokens. Bounds from the issue: no attack averages more than 0.2 on any family, and
hedging between the answer and one other value averages at most 0.5. The table is in docs/reward.md
(`longrecall niah attacks --n 200 --output docs/reward.md`).
"""
import pytest

from longrecall.niah import attacks as A
from longrecall.niah.families import FAMILIES

N = 200


@pytest.fixture(scope="module")
def table(tok):
    samples = A.audit_samples(tok, n=N, length=1024, seed=7)
    return A.attack_scores(samples, tok, seed=7)


def _mean(v):
    return sum(v) / len(v)


def test_every_family_and_attack_is_covered(table):
    for name in A.ATTACKS:
        assert name in table, name
    for fam in FAMILIES:
        assert len(table["copy the haystack"][fam]) == N
        assert len(table["every value of the kind in the vocabulary"][fam]) == N
        if fam != "single":  # single has no distractor needle; its context-reading attacks use needle-dense haystacks
            assert len(table["every needle value"][fam]) == N


@pytest.mark.parametrize("attack", list(A.ATTACKS))
def test_no_attack_averages_more_than_the_bound(table, attack):
    for fam, rewards in table[attack].items():
        assert _mean(rewards) <= A.MAX_ATTACK, f"{attack} on {fam}: {_mean(rewards):.3f} over {len(rewards)} samples"


def test_hedging_pays_at_most_half(table):
    for fam, rewards in table[A.HEDGE].items():
        assert _mean(rewards) <= A.MAX_HEDGE, f"hedge on {fam}: {_mean(rewards):.3f}"


def test_the_right_answer_with_polite_filler_still_earns_full_reward(table):
    for fam, rewards in table["correct answer with filler"].items():
        assert min(rewards) == 1.0, fam
