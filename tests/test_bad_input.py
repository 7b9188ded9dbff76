"""Bad input meets one line, a non-zero exit and no file left behind (issue 18; the table is docs/bad-input.md).

Every case runs the real command line in-process from an empty folder; none loads a model (each fails before).
"""
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from longrecall.cli import main as cli_main
from longrecall.config import load_config

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


def _adapter(root: Path, config: str, info: dict | None = None) -> str:
    _write(root / "adapter_config.json", config)
    if info is not None:
        _write(root / "longrecall_adapter.json", json.dumps(info))
    return str(root)


def _store(path: Path, text: str) -> str:
    from longrecall.memory.store import SQLiteStore

    s = SQLiteStore(path, batch_chunks=8, chunk_chars=200)
    s.add_document(text, source="notes")
    s.close()  # the last connection checkpoints the WAL into the main file
    return str(path)


def _corrupt(path: str, start: float = 0.0) -> str:
    """Garbage over the pages after the first (or from `start` of the file on, the data pages only): the header and
    the schema page stay intact."""
    data = bytearray(Path(path).read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for off in range(max(page, int(len(data) * start)), len(data)):
        data[off] = (off * 151 + 7) % 256
    Path(path).write_bytes(bytes(data))
    return path


NOTES = " ".join(f"Locker {4000 + i} is in room B{i}. The ferry left pier {i % 9} at dawn." for i in range(400))


def _busy_port(tmp):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    _busy_port.sockets.append(s)  # held open until the test session ends
    return str(s.getsockname()[1])


_busy_port.sockets = []


# (id, setup(tmp) -> argv, expected fragment of the one line). Setup files are made before the snapshot of the folder.
CASES = [
    # §4: tracebacks that became one line
    ("yaml-n-word", lambda t: ["data", "sft", "--config", _write(t / "c.yaml", "n: five\n").name, "--output-dir", "o"],
     "config key 'n' in c.yaml must be a whole number (int), got 'five'"),
    ("yaml-n-list", lambda t: ["data", "sft", "--config", _write(t / "c.yaml", "n: [1, 2]\n").name, "--output-dir", "o"],
     "config key 'n' in c.yaml must be a whole number (int), got [1, 2]"),
    ("yaml-n-float", lambda t: ["data", "sft", "--config", _write(t / "c.yaml", "n: 1.5\n").name, "--output-dir", "o"],
     "must be a whole number (int), got 1.5"),
    ("yaml-n-bool", lambda t: ["data", "sft", "--config", _write(t / "c.yaml", "n: true\n").name, "--output-dir", "o"],
     "must be a whole number (int), got True"),
    ("yaml-grid-type", lambda t: ["eval", "niah", "--config", _write(t / "g.yaml", "samples: [1, 2]\n").name, "--output-dir", "e"],
     "config key 'samples' must be a whole number (int), got [1, 2]"),
    ("config-is-dir", lambda t: (t / "d").mkdir() or ["data", "sft", "--config", "d", "--output-dir", "o"],
     "config d is a folder, not a YAML file"),
    ("config-is-dir-dataclass", lambda t: (t / "d").mkdir() or ["train", "longlora", "--config", "d", "--output-dir", "o"],
     "config d is a folder, not a YAML file"),
    ("out-is-dir", lambda t: (t / "d").mkdir() or ["niah", "generate", "--length", "512", "--out", "d"], "d is a folder: pass a file path"),
    ("adapter-bad-json-eval", lambda t: ["eval", "niah", "--adapter", _adapter(t / "ad", "{not json"), "--output-dir", "e"],
     "adapter_config.json is not valid JSON"),
    ("adapter-bad-json-merge", lambda t: ["train", "merge", "--adapter", _adapter(t / "ad", "[1,"), "--output-dir", "m"],
     "adapter_config.json is not valid JSON"),
    ("adapter-bad-info", lambda t: _adapter(t / "ad", "{}") and _write(t / "ad" / "longrecall_adapter.json", "[]") and ["train", "merge", "--adapter", "ad", "--output-dir", "m"],
     "longrecall_adapter.json must hold a JSON object"),
    ("adapter-unknown-base", lambda t: ["train", "merge", "--adapter", _adapter(t / "ad", "{}", {"base_model": "nobody/no-such-model"}), "--output-dir", "m"],
     "'nobody/no-such-model' is not a local folder nor in the Hugging Face cache"),
    ("store-corrupt-ask", lambda t: ["memory", "ask", "Which room holds locker 4017?", "--no-generate", "--store", _corrupt(_store(t / "m.db", NOTES))],
     "m.db is damaged"),
    ("store-corrupt-add", lambda t: ["memory", "add", _write(t / "n.txt", "More notes.").name, "--store", _corrupt(_store(t / "m.db", NOTES))],
     "m.db is damaged"),
    ("store-corrupt-data-ask", lambda t: ["memory", "ask", "Which room holds locker 4017?", "--no-generate", "--store", _corrupt(_store(t / "m.db", NOTES), 0.5)],
     "m.db is damaged"),
    ("store-corrupt-data-add", lambda t: ["memory", "add", _write(t / "n.txt", "More notes.").name, "--store", _corrupt(_store(t / "m.db", NOTES), 0.5)],
     "m.db is damaged"),
    ("longlora-binary-sft", lambda t: ["train", "longlora", "--config", "configs/longlora-cpu-smoke.yaml", "--set",
                                       f"sft={_write(t / 'b.jsonl', bytes(range(128, 256)) * 8).name}", "--output-dir", "o"],
     "b.jsonl:1 is not UTF-8 text"),
    ("longlora-missing-sft", lambda t: ["train", "longlora", "--config", "configs/longlora-cpu-smoke.yaml", "--set", "sft=none.jsonl", "--output-dir", "o"],
     "none.jsonl does not exist"),
    # §5: inputs that were accepted but wrong
    ("n-zero", lambda t: ["niah", "generate", "--n", "0", "--out", "x.jsonl"], "--n 0: ask for at least 1 sample per cell"),
    ("n-negative", lambda t: ["niah", "generate", "--n", "-3", "--out", "x.jsonl"], "--n -3: ask for at least 1 sample per cell"),
    ("depth-negative", lambda t: ["niah", "generate", "--depth", "-10%", "--out", "x.jsonl"], "depth -10% is outside 0..1"),
    ("depth-over", lambda t: ["niah", "generate", "--depth", "1.5", "--out", "x.jsonl"], "depth 1.5 is outside 0..1"),
    ("length-huge", lambda t: ["niah", "generate", "--length", "10000000", "--out", "x.jsonl"], "length 10000000 is over 1048576 tokens"),
    ("length-zero", lambda t: ["niah", "generate", "--length", "0", "--out", "x.jsonl"], "length 0 must be at least 1 token"),
    ("grid-depth-yaml", lambda t: ["eval", "niah", "--config", _write(t / "g.yaml", "depths: [1.5]\n").name, "--output-dir", "e"],
     "depth 1.5 is outside 0..1"),
    ("batch-size-0", lambda t: ["eval", "niah", "--batch-size", "0", "--output-dir", "e"], "--batch-size 0: must be 1 or more"),
    ("max-new-tokens-0", lambda t: ["eval", "niah", "--max-new-tokens", "0", "--output-dir", "e"], "--max-new-tokens 0: must be 1 or more"),
    ("k-0", lambda t: ["memory", "ask", "q?", "-k", "0", "--store", "m.db"], "-k must be 1 or more, got 0"),
    ("k-negative", lambda t: ["memory", "ask", "q?", "-k", "-5", "--store", "m.db"], "-k must be 1 or more, got -5"),
    ("budget-negative", lambda t: ["memory", "ask", "q?", "--budget-chars", "-1", "--store", "m.db"], "--budget-chars must be 1 or more, got -1"),
    ("read-group-negative", lambda t: ["memory", "ask", "q?", "--read-group", "-1", "--store", "m.db"], "--read-group must be 0 or more, got -1"),
    ("bench-read-group-negative", lambda t: ["memory", "bench", "--read-group", "-2", "--output-dir", str(t / "b")], "--read-group must be 0 or more, got -2"),
    ("curve-bad-point", lambda t: ["eval", "curve", "--point", "sft=dir", "--output-dir", str(t / "c")], "write SERIES@MINUTES=SCORECARD_DIR"),
    ("ppl-length-0", lambda t: ["eval", "ppl", "--lengths", "0", "--output-dir", "p"], "length 0 must be at least 1 token"),
    ("backend-bogus", lambda t: ["eval", "niah", "--backend", "bogus", "--output-dir", "e"], "use one of hf, openai, rag"),
    ("hub-id-unknown", lambda t: ["niah", "generate", "--tokenizer", "nobody/no-such-model", "--out", "x.jsonl"],
     "'nobody/no-such-model' is not a local folder nor in the Hugging Face cache"),
    ("model-folder-missing", lambda t: ["eval", "niah", "--model", "./no/such/folder", "--output-dir", "e"], "folder ./no/such/folder does not exist"),
    ("lift-random-bytes", lambda t: ["data", "lift", "--input", _write(t / "r.txt", bytes((i * 97 + 13) % 256 for i in range(4000))).name, "--output-dir", "o"],
     "r.txt looks binary"),
    ("lift-latin1", lambda t: ["data", "lift", "--input", _write(t / "l.txt", "caf\xe9 cr\xe8me. ".encode("latin-1") * 50).name, "--output-dir", "o"],
     "l.txt is not UTF-8 text"),
    ("lift-jsonl-many", lambda t: ["data", "lift", "--input", _write(t / "s.jsonl", '{"context": "a"}\n{"context": "b"}\n').name, "--output-dir", "o"],
     "s.jsonl holds 2 samples; LIFT memorises one input"),
    ("lift-route-no-vocabulary", lambda t: ["lift", "ask", "--adapter", str(_write(t / "a" / "lift_manifest.json", '{"adapter": "gated"}').parent),
                                             "--route", "entity", "Who?"],
     "ingested before the router existed): pass --input with the ingested file"),
    ("lift-route-lora", lambda t: ["lift", "ask", "--adapter", str(_write(t / "a" / "lift_manifest.json", '{"adapter": "lora"}').parent),
                                    "--route", "entity", "Who?"],
     "--route entity needs a gated adapter"),
    ("memory-whitespace", lambda t: ["memory", "add", _write(t / "w.txt", "  \n\t\n   ").name, "--store", "m.db"],
     "nothing to add: the text is empty or only whitespace"),
    ("memory-missing-file", lambda t: ["memory", "add", "nope.txt", "--store", "m.db"], "nope.txt is not a file"),
    ("memory-binary", lambda t: ["memory", "add", _write(t / "b.bin", b"\x89PNG\x00\x01" * 50).name, "--store", "m.db"], "b.bin looks binary"),
    ("report-empty", lambda t: (t / "EMPTY").mkdir() or ["report", "--run-dir", "EMPTY"], "EMPTY holds no run to report"),
    ("report-missing", lambda t: ["report", "--run-dir", "nothing"], "nothing does not exist"),
    ("unknown-flag", lambda t: ["niah", "generate", "--lenght", "1k"], "unrecognized arguments: --lenght 1k"),
    ("run-unknown-input", lambda t: ["run", "--preset", "rl-cpu", "--input", "nope=x", "--list"], "this preset has no input 'nope'"),
    # §6: failures that used to leave files
    ("openai-unreachable", lambda t: ["eval", "niah", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--output-dir", "e"],
     "no OpenAI-compatible server answers at http://127.0.0.1:9/v1"),
    ("env-unreachable", lambda t: ["env", "evaluate", "--config", "configs/env-smoke.yaml", "--openai.base_url", "http://127.0.0.1:9/v1"],
     "no OpenAI-compatible server answers at http://127.0.0.1:9/v1"),
    # §7
    ("serve-busy-port", lambda t: ["serve", "--port", _busy_port(t)], "is already in use"),
    ("serve-bad-port", lambda t: ["serve", "--port", "70000"], "--port 70000 is not a port"),
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("setup, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_line_nonzero_exit_no_file_left(setup, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LONGRECALL_MEMORY", str(tmp_path / "default-memory.db"))
    argv = setup(tmp_path)
    before = _tree(tmp_path)
    try:
        code = cli_main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors exit (now with one line too)
        code = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code not in (0, None), err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]
    assert _tree(tmp_path) == before, "files left behind"


def test_doc_table_lists_every_case():
    table = (Path(__file__).resolve().parents[1] / "docs" / "bad-input.md").read_text()
    missing = [c[0] for c in CASES if f"`{c[0]}`" not in table]
    assert not missing, f"docs/bad-input.md lacks {missing}"


def test_one_parser_for_lengths_and_depths_everywhere():
    from longrecall.eval.grid import GridConfig
    from longrecall.niah.cli import depth_list, int_list

    cfg = load_config(GridConfig, None, {"lengths": "1k,2k,4k", "depths": "0,50%,100%"})
    assert cfg.lengths == [1024, 2048, 4096] and cfg.depths == [0.0, 0.5, 1.0]
    cfg = load_config(GridConfig, None, {"lengths": ["1k", 1536], "depths": ["25%", 0.75]})
    assert cfg.lengths == [1024, 1536] and cfg.depths == [0.25, 0.75]
    assert int_list("1k,2048,1.5k") == [1024, 2048, 1536] and depth_list("0,50%,1") == [0.0, 0.5, 1.0]


def test_run_help_lists_every_preset(capsys):
    with pytest.raises(SystemExit):
        cli_main(["run", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("demo", "cpu", "gpu", "rl-cpu"))


def test_closed_pipe_is_quiet(tmp_path):
    """`longrecall memory ask ... | head`: the reader is gone before we write; no BrokenPipeError traceback."""
    db = _store(tmp_path / "m.db", NOTES)
    r, w = os.pipe()
    os.close(r)  # the reader has already gone: every write fails with EPIPE, whatever the timing
    try:
        proc = subprocess.run([sys.executable, "-m", "longrecall", "memory", "ask", "Which room holds locker 4017?", "--no-generate", "--store", db],
                              stdout=w, stderr=subprocess.PIPE, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=SRC))
    finally:
        os.close(w)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr


def test_memory_says_when_nothing_matches(tmp_path, capsys):
    db = _store(tmp_path / "m.db", NOTES)
    code = cli_main(["memory", "ask", "What is the capital of France?", "--store", db])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.strip() == ("error: the memory does not mention France: not in the memory "
                                    "(add text about it with `longrecall memory add FILE`)")
    code = cli_main(["memory", "ask", "what would the weather be like tomorrow?", "--store", db])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.strip() == ("error: nothing in the memory matches this question: no answer "
                                    "(add text about it with `longrecall memory add FILE`)")


def test_interrupt_message_is_true_per_command():
    from longrecall.cli import START_OVER, build_parser, interrupted_message

    def msg(*argv):
        ns, _ = build_parser().parse_known_args(list(argv))
        return interrupted_message(ns)

    assert msg("niah", "generate") == START_OVER and "starts it over" in START_OVER
    assert "resume it" in msg("memory", "add", "f.txt")
    assert "finished cells are kept" in msg("eval", "niah")
    assert "last checkpoint" in msg("train", "longlora")
    assert "finished stages are kept" in msg("run")
