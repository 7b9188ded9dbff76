"""Fakes for the env tests: an OpenAI-style chat server that knows its prompts and raises on any other, and an
HTTP stub that answers fixed bodies."""
import http.server
import threading
from types import SimpleNamespace

import pytest


class FakeChatServer:
    """Stands in for `env.server`: answers from `answers[user message]`, raises on an unknown prompt.

    An answer is a string (a plain OpenAI server: finish_reason "stop", no ids) or a dict of choice fields
    {content, finish_reason, token_ids, policy_version}; `reply` adds top-level fields (prompt_token_ids, ...)."""

    def __init__(self, answers: dict[str, list] | None = None, fail: Exception | None = None, reply: dict | None = None):
        self.answers = answers or {}
        self.fail = fail
        self.reply = reply or {}
        self.calls: list[dict] = []
        self.servers: list = []  # the library reads a model name from here when it logs an eval

    async def chat_completion(self, messages, n=1, **kwargs):
        self.calls.append({"messages": messages, "n": n, **kwargs})
        if self.fail is not None:
            raise self.fail
        user = [m for m in messages if m["role"] == "user"][-1]["content"]
        if user not in self.answers:
            raise KeyError(f"fake server: unknown prompt {user[:60]!r}")
        choices = []
        for a in self.answers[user][:n]:
            a = {"content": a} if isinstance(a, str) else dict(a)
            a.setdefault("finish_reason", "stop")
            choices.append(SimpleNamespace(message=SimpleNamespace(content=a.pop("content")), **a))
        return SimpleNamespace(choices=choices, **self.reply)


@pytest.fixture
def fake_server():
    return FakeChatServer


@pytest.fixture(scope="module")
def make_env():
    """Build a NiahEnv for a config, with an unreachable endpoint (tests swap in FakeChatServer)."""
    from atroposlib.envs.base import APIServerConfig

    from longrecall.env.niah_env import NiahEnv, NiahEnvConfig

    def make(**overrides):
        cfg = NiahEnvConfig(**{"group_size": 2, "lengths": [256], "tokenizer_name": "default", **overrides})
        server = APIServerConfig(base_url="http://127.0.0.1:9/v1", model_name="m", api_key="x", health_check=False)
        return NiahEnv(cfg, [server])

    return make


@pytest.fixture(scope="session")
def real_server(tmp_path_factory):
    """`transformers serve` with the embedded SmolLM2 weights, shared by the integration tests."""
    from longrecall.env.server import start_server

    with start_server("default", threads=1, log_path=tmp_path_factory.mktemp("server") / "serve.log") as handle:
        yield handle


@pytest.fixture
def http_stub():
    """Serve fixed (status, content type, body) by path on 127.0.0.1; yields (base_url, routes to fill)."""
    routes: dict[str, tuple[int, str, str]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self):
            status, ctype, body = routes.get(self.path, (404, "text/plain", "nope"))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(body.encode())

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.answer()

        do_GET = answer

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", routes
    srv.shutdown()
