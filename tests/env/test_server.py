"""The local server launcher: argv, readiness, failures as one-line UserErrors (no real model here)."""
import subprocess
import sys

import pytest

from longrecall.env.server import ServerHandle, free_port, list_models, server_command, start_server, wait_ready
from longrecall.errors import UserError


def test_server_command_pins_the_model_and_binds_locally():
    argv = server_command("/models/x", "127.0.0.1", 8123)
    assert argv[:5] == [sys.executable, "-m", "transformers.cli.transformers", "serve", "/models/x"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "8123"
    assert argv[argv.index("--device") + 1] == "cpu"


def test_free_port_is_the_port_the_os_assigned_and_is_released(monkeypatch):
    # No second bind of the port (another process may take it in between: that raced): check what free_port does.
    import socket

    import longrecall.env.server as server

    made = []

    class Recording(socket.socket):
        def bind(self, address):
            super().bind(address)
            made.append((self, address, self.getsockname()))

    monkeypatch.setattr(server.socket, "socket", Recording)
    port = free_port("127.0.0.1")
    assert len(made) == 1
    sock, asked, got = made[0]
    assert asked == ("127.0.0.1", 0)  # the OS picks a port that is free now
    assert got == ("127.0.0.1", port) and 0 < port < 65536 and isinstance(port, int)
    assert sock.fileno() == -1  # closed before returning, so the server can bind it


def test_list_models_reads_an_openai_list(http_stub):
    url, routes = http_stub
    routes["/v1/models"] = (200, "application/json", '{"object": "list", "data": [{"id": "/m/a"}, {"id": "b"}]}')
    assert list_models(url) == ["/m/a", "b"]


def test_list_models_names_the_fix_when_down_or_garbage(http_stub):
    url, routes = http_stub
    with pytest.raises(UserError, match="longrecall serve"):
        list_models(f"http://127.0.0.1:{free_port()}/v1", timeout=2)
    routes["/v1/models"] = (200, "text/html", "<html>hello</html>")
    with pytest.raises(UserError, match="did not answer JSON"):
        list_models(url)
    routes["/v1/models"] = (200, "application/json", '{"hello": 1}')
    with pytest.raises(UserError, match="without a model list"):
        list_models(url)


def test_start_server_refuses_a_non_folder_offline():
    with pytest.raises(UserError, match="not a local folder"):
        start_server("no/such-model-anywhere")


def test_wait_ready_reports_an_early_exit(tmp_path):
    log = tmp_path / "serve.log"
    log.write_text("Traceback ...\nOSError: model.safetensors is corrupt\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    handle = ServerHandle(proc, f"http://127.0.0.1:{free_port()}/v1", "/m", log)
    with pytest.raises(UserError, match=r"exited \(code 3\).*corrupt"):
        wait_ready(handle, timeout=5)


def test_wait_ready_times_out_and_stop_ends_the_process(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    handle = ServerHandle(proc, f"http://127.0.0.1:{free_port()}/v1", "/m", tmp_path / "serve.log")
    with pytest.raises(UserError, match="did not answer within 1s"):
        wait_ready(handle, timeout=1)
    with handle:
        assert handle.alive()
    assert not handle.alive()


def test_wait_ready_waits_for_the_pinned_model(http_stub, tmp_path):
    url, routes = http_stub
    routes["/v1/models"] = (200, "application/json", '{"data": [{"id": "/m/x"}]}')
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with ServerHandle(proc, url, "/m/x", tmp_path / "serve.log") as handle:
        wait_ready(handle, timeout=5)
        handle.model_name = "/m/other"
        with pytest.raises(UserError, match="did not answer"):
            wait_ready(handle, timeout=1)
