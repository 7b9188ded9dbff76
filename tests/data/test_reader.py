"""Memory-reader chats: the exact prompt `memory ask` shows its reader, with gold answers; seeded; no held-out wording."""
import json
from argparse import Namespace

from longrecall.data import reader
from longrecall.memory.api import SYSTEM
from longrecall.memory.listing import ABSTAIN


def test_records_are_the_readers_prompt_with_a_gold_answer(tmp_path):
    records, counts = reader.build(4, seed=1, tokens=20_000, progress=False)
    assert records and counts["single"] == 4 and counts["chain"] >= 3
    for r in records:
        system, user, answer = r["messages"]
        assert system == {"role": "system", "content": SYSTEM}
        assert user["content"].startswith("Notes:\n") and "\n\nQuestion: " in user["content"]
        if r["meta"]["task"] == "absent":
            assert ABSTAIN.search(answer["content"])  # the bench counts exactly these as abstentions
        else:
            assert not ABSTAIN.search(answer["content"])
    chains = [r for r in records if r["meta"]["task"] == "chain"]
    assert any(" -> " in r["messages"][2]["content"] for r in chains)
    again, _ = reader.build(4, seed=1, tokens=20_000, progress=False)
    assert again == records


def test_cli_writes_train_and_manifest(tmp_path, capsys):
    assert reader.main(Namespace(worlds=2, world_tokens=20_000, phrasing="train", seed=0, output_dir=str(tmp_path),
                                 families="single,nonliteral,chain,nonliteral,chain")) == 0
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["records"] == len((tmp_path / "train.jsonl").read_text().splitlines()) > 0 and m["phrasing"] == "train"
    assert m["families"] == ["single", "nonliteral", "chain", "nonliteral", "chain"] and m["counts"].get("multikey") is None
    chains = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert sum(r["meta"]["task"] == "chain" for r in chains) >= 3  # two chains a world, one may lack evidence
    assert "reader chats" in capsys.readouterr().out


def test_families_name_known_families():
    import pytest

    from longrecall.errors import UserError

    assert reader.parse_families("chain, nonliteral,chain") == ("chain", "nonliteral", "chain")
    assert reader.rounds(("single", "chain", "nonliteral", "chain", "nonliteral")) == [("single", "chain", "nonliteral"), ("chain", "nonliteral")]
    for bad in ("", "chains", "single,,bogus"):
        with pytest.raises(UserError, match="--families"):
            reader.parse_families(bad)
