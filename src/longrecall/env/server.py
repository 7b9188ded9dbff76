"""A local OpenAI-compatible endpoint: `transformers serve` pinned to one model folder, on 127.0.0.1, offline.

    longrecall serve --model default --port 8000
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..models import cache_dir, resolve, resolve_dtype


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (another process may still take it before we bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port_free(host: str, port: int) -> None:
    """Refuse a taken or impossible port in one line, before a server is started (its log would be the only clue)."""
    if not 0 < port < 65536:
        raise UserError(f"--port {port} is not a port: use 1-65535 (or 0 to pick a free one)")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a port in TIME_WAIT is usable
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError(f"port {port} on {host} is already in use ({e.strerror}): stop what holds it or pass another "
                            "--port (0 picks a free one)") from None


def server_command(model_dir: str, host: str, port: int, dtype: str = "auto", log_level: str = "warning") -> list[str]:
    """argv for `transformers serve`: the positional model pins the server to it and preloads it before listening."""
    return [
        sys.executable, "-m", "transformers.cli.transformers", "serve", model_dir,
        "--host", host, "--port", str(port), "--device", "cpu", "--dtype", dtype, "--log-level", log_level,
    ]


def server_env(threads: int) -> dict:
    env = dict(os.environ)
    # No hub, and no PyPI version check at CLI start-up (huggingface_hub does one otherwise).
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_UPDATE_CHECK="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1")
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def get_json(url: str, timeout: float = 5.0) -> dict:
    """GET a JSON document; raises OSError/ValueError on anything else."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


def list_models(base_url: str, timeout: float = 5.0) -> list[str]:
    """Model ids an OpenAI-compatible endpoint serves; a UserError naming the fix if it is down or not OpenAI-like."""
    url = base_url.rstrip("/") + "/models"
    try:
        data = get_json(url, timeout)
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"no server answers at {base_url} ({reason}): start one with `longrecall serve` or fix the URL") from None
    except ValueError:
        raise UserError(f"{url} did not answer JSON: point the URL at an OpenAI-compatible server (it ends in /v1)") from None
    try:
        return [m["id"] for m in data["data"]]
    except (KeyError, TypeError):
        raise UserError(f"{url} answered JSON without a model list: point the URL at an OpenAI-compatible server") from None


@dataclass
class ServerHandle:
    """A running `transformers serve` subprocess; stop() it or use it as a context manager."""

    process: subprocess.Popen
    base_url: str
    model_name: str
    log_path: Path
    _log: object = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def log_tail(path: Path, n: int = 1) -> str:
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
        return " | ".join(lines[-n:])
    return ""


def start_server(
    model: str = "default",
    port: int | None = None,
    host: str = "127.0.0.1",
    threads: int = 1,
    dtype: str = "auto",
    log_path: str | os.PathLike | None = None,
    timeout: float = 180.0,
) -> ServerHandle:
    """Start `transformers serve` for `model` (alias, folder or cached hub id) and wait until /v1/models lists it."""
    model_dir = resolve(model)
    if not Path(model_dir).exists():
        raise UserError(f"model '{model}' is not a local folder: the server runs offline, pass 'default' or a model folder")
    if port:
        check_port_free(host, port)
    port = port or free_port(host)
    log_path = Path(log_path) if log_path else cache_dir() / "logs" / f"serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w", encoding="utf-8")
    proc = subprocess.Popen(
        server_command(model_dir, host, port, resolve_dtype(dtype)), stdout=log, stderr=subprocess.STDOUT,
        env=server_env(threads), start_new_session=True,
    )
    handle = ServerHandle(proc, f"http://{host}:{port}/v1", model_dir, log_path, log)
    try:
        wait_ready(handle, timeout)
    except BaseException:
        handle.stop()
        raise
    return handle


def wait_ready(handle: ServerHandle, timeout: float) -> None:
    """Poll /v1/models until the pinned model is listed; fail fast if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not handle.alive():
            code, why = handle.process.returncode, log_tail(handle.log_path)[:300]
            raise UserError(f"the model server exited (code {code}): {why} (log: {handle.log_path})")
        try:
            if handle.model_name in [m["id"] for m in get_json(handle.base_url + "/models", 2.0)["data"]]:
                return
        except (OSError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.5)
    raise UserError(f"the model server did not answer within {timeout:.0f}s: see {handle.log_path}, or raise the timeout")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="'default' (embedded SmolLM2) or a local model folder")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: pick a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (keep 127.0.0.1 unless you mean to expose it)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")), help="torch threads")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 where bf16 is native, else float32) | float32 | bfloat16")
    parser.add_argument("--log", default=None, help="server log file (default: the longrecall cache)")


def main(args: argparse.Namespace) -> int:
    """Serve in the foreground until Ctrl-C or SIGTERM (both stop the server process too)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    handle = start_server(args.model, args.port or None, args.host, args.threads, args.dtype, args.log)
    print(f"serving {handle.model_name}\n  base_url: {handle.base_url}\n  model_name: {handle.model_name}", flush=True)
    print(f"  log: {handle.log_path}", flush=True)
    try:
        handle.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
    if handle.process.returncode not in (0, -15, None):
        raise UserError(f"the model server stopped (code {handle.process.returncode}): see {handle.log_path}")
    return 0
