"""Packed pretraining blocks: exactly N tokens, EOS after every document, a corpus read in pieces, errors leave nothing."""
import argparse
import json

import pytest

from longrecall.cli import main as cli
from longrecall.data import common as C
from longrecall.data import pretrain as P
from longrecall.errors import UserError
from longrecall.niah.haystacks import prose_text


def blocks(path):
    return [json.loads(line)["input_ids"] for line in path.read_text().splitlines()]


def user_mix(corpus):
    return C.Mix([("single", 1.0)], [(512, 1.0)], [("user", 1.0)], [("number", 1.0)], str(corpus))


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(4):
        (folder / f"doc{i}.txt").write_text(prose_text(60, seed=i) + "\n\nA second paragraph, with  two spaces.\n")
    (folder / "rows.jsonl").write_text(json.dumps({"text": prose_text(40, seed=9)}) + "\n\n" + json.dumps({"text": "Short row."}) + "\n")
    (folder / "skip.bin").write_bytes(b"\x00\x01")  # other suffixes in a folder are not documents
    return folder


def test_packer_hands_out_exact_blocks():
    pk = P.Packer(4, eos=0)
    assert list(pk.add([1, 2, 3])) == [] and list(pk.add([4, 5, 6, 7, 8, 9])) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert pk.buf == [9]


def test_corpus_streams_in_pieces_into_exact_blocks_with_eos(tmp_path, tok, corpus):
    out = tmp_path / "out"
    m = P.build_pretrain(out, tok, 256, 10**9, [("user", 1.0)], user_mix(corpus), seed=0, config={}, read_chars=300)
    # Read whole, each document followed by EOS: the streamed blocks are exactly this stream cut into 256s.
    order = sorted(list(corpus.glob("*.txt")) + [corpus / "rows.jsonl"])
    texts = []
    for p in order:
        texts += [prose_text(40, seed=9), "Short row."] if p.suffix == ".jsonl" else [p.read_text()]
    stream = []
    for t in texts:
        stream += tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    got = blocks(out / "train.jsonl")
    assert all(len(b) == 256 for b in got) and len(got) == len(stream) // 256 > 3
    assert [x for b in got for x in b] == stream[: len(got) * 256]
    assert m["documents"]["user"] == 6 and m["exhausted"] == ["user"] and m["blocks"] == len(got)


def test_generated_documents_with_qa_mix_load_and_repeat(tmp_path, tok):
    from datasets import load_dataset

    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        argv = ["data", "pretrain", "--output-dir", str(d), "--block", "512", "--tokens", "3k", "--qa-mix", "0.3", "--qa-lengths", "512"]
        assert cli(argv + ["--haystacks", "prose,needles", "--doc-lengths", "600"]) == 0
    for name in ("train.jsonl", "manifest.json", "README.md"):
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes(), name
    ds = load_dataset("json", data_files=str(dirs[0] / "train.jsonl"))["train"]
    assert ds.num_rows == 6 and all(len(x) == 512 for x in ds["input_ids"])
    m = json.loads((dirs[0] / "manifest.json").read_text())
    assert 0.2 < m["qa_share"] < 0.5 and m["documents"]["qa"] >= 1 and m["tokens"] == 6 * 512
    text = tok.decode([x for b in ds["input_ids"] for x in b])
    assert "<|im_start|>assistant" in text  # the QA chats are rendered with the chat template


def test_block_longer_than_the_model_needs_position_scaling(tmp_path, tok):
    assert P.max_positions(tok, "default") == 8192
    with pytest.raises(UserError, match="--position-scaling 2"):
        cli_main(tmp_path, "--block", "16k")
    P.check_block(16384, 8192, 2.0, "default")  # allowed with the factor the model will train with
    assert not (tmp_path / "out").exists()


def cli_main(tmp_path, *argv):
    p = argparse.ArgumentParser()
    P.add_arguments(p)
    return P.main(p.parse_args(["--output-dir", str(tmp_path / "out"), *argv]))


def test_bad_input_is_a_user_error_and_leaves_no_file(tmp_path, tok):
    small = tmp_path / "small.txt"
    small.write_text("Only a few words here.")
    with pytest.raises(UserError, match=r"the corpus gives \d+ tokens, less than one block of 512: lower --block or add text"):
        cli_main(tmp_path, "--block", "512", "--haystacks", "user", "--corpus", str(small))
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF")
    with pytest.raises(UserError, match="unknown format"):
        cli_main(tmp_path, "--corpus", str(pdf))
    with pytest.raises(UserError, match="unknown task family"):
        cli_main(tmp_path, "--tasks", "haystack_soup")
    with pytest.raises(UserError, match="--corpus"):
        cli_main(tmp_path, "--haystacks", "prose,user")
    with pytest.raises(UserError, match="unknown haystack"):
        cli_main(tmp_path, "--haystacks", "tweets")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_interrupt_midway_leaves_no_partial_file(tmp_path, tok, corpus, monkeypatch):
    calls = {"n": 0}
    real = P.encode

    def flaky(t, text):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(t, text)

    monkeypatch.setattr(P, "encode", flaky)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        P.build_pretrain(out, tok, 256, 10**9, [("user", 1.0)], user_mix(corpus), seed=0, config={}, read_chars=300)
    assert not list(out.iterdir())


def test_pretrain_configs_parse(tok):
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[2] / "configs").glob("data-pretrain-*.yaml")):
        p = argparse.ArgumentParser()
        P.add_arguments(p)
        a = p.parse_args(["--config", str(path)])
        P.apply_config(a, p)
        assert a.output_dir and C.parse_count(a.block) >= 4096 and C.parse_count(a.tokens) >= C.parse_count(a.block), path
