"""Backends: the in-process HF model (generation, prefix-KV reuse, adapters) and the OpenAI client against a local fake server."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from longrecall.errors import UserError
from longrecall.eval.backends import BACKENDS, Chat, ContextTransformBackend, HFBackend, OpenAIBackend, as_chat, make_backend

CONTEXT = [{"role": "system", "content": "You are a careful reader."},
           {"role": "user", "content": " ".join(f"Line {i} says the code is {i * 7919 % 10007}." for i in range(40))}]
QUESTIONS = ["What does line 3 say?", "What does line 17 say?", "Which line has code 42?"]
PREFIXES = ["Line 3 says", "The code of line 17 is", "It is line"]


@pytest.fixture(scope="module")
def hf(tiny_dir):
    return HFBackend(model=str(tiny_dir), dtype="float32", reuse_min_tokens=16)


def _chats():
    chats = []
    for q, p in zip(QUESTIONS, PREFIXES):
        msgs = [dict(m) for m in CONTEXT]
        msgs[-1]["content"] += "\n\n" + q
        chats.append(Chat(msgs, p))
    return chats


def test_generate_returns_one_continuation_per_prompt(hf):
    out = hf.generate(_chats(), max_new_tokens=5, reuse=False)
    assert len(out) == 3 and all(isinstance(o, str) and o for o in out)
    assert len(hf.tokenizer(out[0], add_special_tokens=False)["input_ids"]) <= 6
    assert hf.max_positions == 8192 and hf.name.startswith("hf:")


def test_answer_prefix_is_continued_not_repeated(hf):
    ids = hf.encode(Chat([{"role": "user", "content": "hi"}], "The answer is"))
    assert hf.tokenizer.decode(ids).endswith("<|im_start|>assistant\nThe answer is")


def test_kv_reuse_gives_the_same_answers_as_reprefill(hf):
    fresh = hf.generate(_chats(), max_new_tokens=6, reuse=False)
    reused = hf.answer_many(CONTEXT, QUESTIONS, PREFIXES, max_new_tokens=6)
    grouped = hf.generate(_chats(), max_new_tokens=6)  # auto-grouped by shared prefix
    assert reused == fresh == grouped
    assert len(set(fresh)) > 1  # the questions really lead to different answers


def test_batched_generation_matches_one_at_a_time(tiny_dir):
    batched = HFBackend(model=str(tiny_dir), dtype="float32", batch_size=3)
    one = HFBackend(model=str(tiny_dir), dtype="float32")
    prompts = [Chat([{"role": "user", "content": t}], "So") for t in ["a b c d e f", "hello", "x " * 30]]
    assert batched.generate(prompts, 4, reuse=False) == one.generate(prompts, 4, reuse=False)


def _save_lora_plus(folder, hidden=32, target_length=None, base_model=None):
    """A LoRA+ adapter written by the trainer's own save_adapter (optionally trained with position scaling)."""
    import torch

    from longrecall.models import tiny_model
    from longrecall.train.lora_plus import INFO_FILE, LoraPlusConfig, apply_lora_plus, save_adapter
    from longrecall.train.positions import apply_position_scaling

    base = tiny_model(49152, hidden=hidden)
    if target_length:
        apply_position_scaling(base, target_length)
    model = apply_lora_plus(base, LoraPlusConfig(rank=2))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1.0)
    save_adapter(model, folder)
    if base_model:
        info = json.loads((folder / INFO_FILE).read_text())
        (folder / INFO_FILE).write_text(json.dumps({**info, "base_model": base_model}))
    return folder


def test_adapter_is_merged_and_position_scaling_applied(tiny_dir, tmp_path):
    folder = _save_lora_plus(tmp_path / "ad", target_length=16384, base_model=str(tiny_dir))
    base = HFBackend(model=str(tiny_dir), dtype="float32")
    tuned = HFBackend(model=str(tiny_dir), adapter=str(folder), dtype="float32")
    assert tuned.max_positions == 16384 and tuned.model.config.rope_parameters["rope_type"] == "linear"
    q_base = base.model.model.layers[0].self_attn.q_proj.weight
    q_tuned = tuned.model.model.layers[0].self_attn.q_proj.weight
    assert not hasattr(tuned.model, "peft_config") and not q_base.equal(q_tuned)
    assert tuned.model.get_output_embeddings().weight is tuned.model.get_input_embeddings().weight
    assert len(tuned.generate(["hello"], 3)) == 1


def test_adapter_errors_name_the_fix(tiny_dir, tmp_path):
    with pytest.raises(UserError, match="adapter folder .* not found"):
        HFBackend(model=str(tiny_dir), adapter=str(tmp_path / "missing"))
    other = _save_lora_plus(tmp_path / "other", base_model="/elsewhere/some-org/other-model")
    with pytest.raises(UserError, match="pass --model /elsewhere/some-org/other-model"):
        HFBackend(model=str(tiny_dir), adapter=str(other))
    wide = _save_lora_plus(tmp_path / "wide", hidden=64)  # no recorded base: caught by the shape check
    with pytest.raises(UserError, match="does not fit model"):
        HFBackend(model=str(tiny_dir), adapter=str(wide))


def test_lift_gated_memory_adapter_loads(tiny_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from longrecall.lift.gated_memory import attach_gated_memory, save_gated_memory

    model = attach_gated_memory(AutoModelForCausalLM.from_pretrained(tiny_dir))
    save_gated_memory(model, tmp_path / "lift")
    b = HFBackend(model=str(tiny_dir), adapter=str(tmp_path / "lift"), dtype="float32")
    assert hasattr(b.model.model.layers[0].self_attn, "gated_memory") and len(b.generate(["hi"], 3)) == 1


def test_registry_and_context_transform():
    class Fake:
        name, max_positions = "fake", 100

        def generate(self, prompts, max_new_tokens=64):
            return [as_chat(p).messages[-1]["content"] for p in prompts]

    wrapped = ContextTransformBackend(Fake(), lambda p: p.upper() if isinstance(p, str) else p, name="upper")
    assert wrapped.generate(["abc"]) == ["ABC"] and wrapped.max_positions is None
    assert set(BACKENDS) >= {"hf", "openai"}
    with pytest.raises(UserError, match="unknown backend"):
        make_backend("nope")


# -- OpenAI-compatible endpoint ------------------------------------------------------------------------------------------
class _Server:
    """A chat-completions endpoint that replays scripted behaviours: 'ok', 500, 'garbage'."""

    def __init__(self, script):
        self.script, self.requests = list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                what = outer.script.pop(0) if outer.script else "ok"
                if what == 500:
                    return self._send(500, {"error": {"message": "busy"}})
                if what == "garbage":
                    return self._send(200, {"id": "x", "object": "chat.completion", "choices": []})
                text = "echo: " + body["messages"][-1]["content"]
                self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}]})

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_answers_in_order_and_continues_the_prefix():
    server = _Server([])
    try:
        b = OpenAIBackend(server.url, model="m", concurrency=3, backoff=0.01)
        prompts = [Chat([{"role": "user", "content": f"q{i}"}], "A:" if i == 0 else "") for i in range(5)]
        out = b.generate(prompts, 8)
        assert out == ["echo: A:"] + [f"echo: q{i}" for i in range(1, 5)]
        first = next(r for r in server.requests if r["messages"][-1]["content"] == "A:")
        assert first["continue_final_message"] is True and first["max_tokens"] == 8
    finally:
        server.close()


def test_openai_retries_server_errors_then_succeeds():
    server = _Server([500, 500])
    try:
        b = OpenAIBackend(server.url, model="m", concurrency=1, retries=3, backoff=0.01)
        assert b.generate(["hello"], 4) == ["echo: hello"] and len(server.requests) == 3
    finally:
        server.close()


def test_openai_garbage_and_exhausted_retries_count_as_empty(caplog):
    server = _Server(["garbage", 500, 500])
    try:
        b = OpenAIBackend(server.url, model="m", concurrency=1, retries=1, backoff=0.01)
        assert b.generate(["a", "b"], 4) == ["", ""] and b.empty_answers == 2
        assert "empty answer" in caplog.text
    finally:
        server.close()


def test_openai_down_endpoint_is_a_user_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = OpenAIBackend(f"http://127.0.0.1:{port}/v1", model="m", retries=1, backoff=0.01, timeout=5)
    with pytest.raises(UserError, match="cannot reach .*`longrecall serve`"):
        b.generate(["hi"], 4)
