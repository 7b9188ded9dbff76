"""The CLI: every command has --help, bad input is one line without a traceback, generate writes exact files."""
import json
import subprocess
import sys

import pytest

from longrecall.cli import COMMANDS, main


def run(*args):
    return subprocess.run([sys.executable, "-m", "longrecall", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("words", [c[0] for c in COMMANDS])
def test_every_command_has_help(words):
    r = run(*words, "--help")
    assert r.returncode == 0, r.stderr[-800:]
    assert "usage: longrecall" in r.stdout


def test_every_command_group_has_help():
    """`longrecall eval --help` lists its subcommands' one-line helps: argparse %-formats them, so a bare % broke it."""
    from longrecall.cli import build_parser

    groups = sorted({c[0][0] for c in COMMANDS if len(c[0]) > 1})
    assert groups
    for group in groups:
        sub = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == group)[1]
        text = " ".join(sub.format_help().split())  # raised TypeError on a bare % before
        assert all(f" {c[0][1]} " in text for c in COMMANDS if c[0][0] == group and len(c[0]) > 1), group


def test_generate_writes_samples_of_the_requested_length(tmp_path, tok):
    out = tmp_path / "s.jsonl"
    assert main(["niah", "generate", "--task", "single,chain", "--length", "1k,1536", "--depth", "0,100%", "--n", "2", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2 * 2
    for r in rows:
        assert r["length"] - 16 <= r["prompt_tokens"] + r["answer_budget"] <= r["length"]


def test_bad_input_is_one_line_and_leaves_no_file(tmp_path):
    out = tmp_path / "x.jsonl"
    r = run("niah", "generate", "--task", "all_needles", "--length", "200", "--n-needles", "20", "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "raise --length" in r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_config_file_fills_flags(tmp_path, tok):
    cfg = tmp_path / "gen.yaml"
    cfg.write_text("task: [multikey]\nlength: [1024]\ndepth: [0.5]\nn: 3\n")
    out = tmp_path / "s.jsonl"
    assert main(["niah", "generate", "--config", str(cfg), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and {r["task"] for r in rows} == {"multikey"}
    cfg.write_text("tasks_typo: [single]\n")
    assert main(["niah", "generate", "--config", str(cfg), "--out", str(out)]) == 2


def test_sigterm_unwinds_like_ctrl_c(tmp_path):
    """kill/timeout send SIGTERM: the command's finally blocks still run (a GRPO run stops the servers it launched)."""
    import signal
    import subprocess
    import sys
    import time

    mark = tmp_path / "mark"
    script = (
        "import argparse, pathlib, sys, time\n"
        "import longrecall.cli as c\n"
        "def fn(args):\n"
        "    try:\n"
        f"        pathlib.Path({str(mark)!r}).write_text('started'); time.sleep(120)\n"
        "    finally:\n"
        f"        pathlib.Path({str(mark)!r}).write_text('cleaned')\n"
        "c._resolve = lambda parser, argv: (fn, argparse.Namespace())\n"
        "sys.exit(c.main(['x']))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # a loaded box imports slowly; the wait ends as soon as the command has started
    while not (mark.exists() and mark.read_text() == "started"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert mark.read_text() == "cleaned"
    assert "Traceback" not in err
