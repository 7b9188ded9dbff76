"""eval agree regenerates an environment sample from its id fields, exactly."""
from longrecall.eval.agree import _spec_from_id
from longrecall.niah import GenSpec, generate_sample


def test_sample_regenerates_from_its_id(tok):
    for task in ("single", "chain"):
        s = generate_sample(GenSpec(task=task, length=1024, depth=0.25, haystack="prose", seed=1_000_000_000, phrasing="heldout"), tok)
        row = {"id": s.id, "task": s.task, "length": str(s.length), "depth": str(s.depth), "seed": str(s.seed)}
        again = generate_sample(_spec_from_id(row), tok)
        assert again.id == s.id and again.context == s.context
