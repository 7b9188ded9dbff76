"""Fixtures for the RL tests: a free port, and a real Atropos `run-api` process on it."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, body=None):
    """GET (body None) or POST JSON; returns the decoded JSON (or text) reply."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@pytest.fixture
def http():
    """GET (body None) or POST JSON to a URL, the decoded reply back."""
    return _http


@pytest.fixture
def dead_url() -> str:
    """A URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def run_api():
    """atroposlib's in-memory API on 127.0.0.1:<free port>; yields its URL, resets it per use, stops it after."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "atroposlib.cli.run_api", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if proc.poll() is not None:
                pytest.fail(f"run-api exited: {proc.stderr.read().decode()[-500:]}")
            try:
                _http(url + "/")
                break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("run-api did not start in 30 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
