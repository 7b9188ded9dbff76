"""The live policy as an OpenAI-compatible endpoint, so Atropos rollouts sample the weights being trained.

`transformers serve` (or vLLM) holds the weights it was started with: an Atropos consumer training against it is
on-policy only at the first step. This serves the trainer's own model instead, from a thread of the training
process: `/v1/models` and `/v1/chat/completions` (n, max_tokens, temperature, top_p, continue_final_message), which
is all the needle environment asks. Generation and the optimizer step share one lock, so a rollout never sees
half-updated weights, and generation always runs in eval mode with full attention.

Beyond the OpenAI shape, each reply says exactly what was sampled and by which weights, so the trainer trains on
what was sampled and only on the current policy:
- `prompt_token_ids` (top level) and `token_ids` (per choice): the prompt and the sampled answer ids, the stop token
  included when the answer stopped (finish_reason "stop"), no end token when it was cut (finish_reason "length").
  vLLM returns the same two fields with `return_token_ids: true`.
- `policy_version` (top level and per choice): the optimizer steps the weights had taken (`server.version`, which
  the trainer advances under the lock after each step), so stale rollouts can be told apart and dropped.

    server = PolicyServer(model, tokenizer).start()      # server.base_url -> http://127.0.0.1:PORT/v1
    with server.lock: ...optimizer step...; server.version += 1
    server.stop()
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..train.s2attn import full_attention

MODEL_NAME = "longrecall-policy"


def _completion_body(choices: list[dict], prompt_ids: list[int], model: str, version: int) -> dict:
    """An OpenAI chat.completion body; choices are {text, finish, token_ids}."""
    n_completion = sum(len(c["token_ids"]) for c in choices)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": c["text"]}, "finish_reason": c["finish"],
                     "token_ids": c["token_ids"], "policy_version": version} for i, c in enumerate(choices)],
        "prompt_token_ids": prompt_ids, "policy_version": version,
        "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": n_completion, "total_tokens": len(prompt_ids) + n_completion},
    }


class PolicyServer:
    """Serve `model` (a peft or transformers causal LM, possibly in training) on 127.0.0.1 from a daemon thread."""

    def __init__(self, model, tokenizer, host: str = "127.0.0.1", port: int = 0, model_name: str = MODEL_NAME,
                 max_new_tokens_cap: int = 4096):
        self.model, self.tokenizer, self.model_name, self.cap = model, tokenizer, model_name, max_new_tokens_cap
        self.lock = threading.RLock()
        self.requests = 0
        self.version = 0  # optimizer steps taken by the served weights; the trainer advances it under the lock
        self._closing = False
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "PolicyServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="policy-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, then wait for a generation in flight: a thread killed inside torch at exit aborts the process."""
        self._closing = True
        self._httpd.shutdown()
        with self.lock:
            pass
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def prompt_ids(self, messages: list[dict], continue_final_message: bool = False) -> list[int]:
        """The prompt's token ids: the chat with the generation prompt, or continuing a final assistant turn (the
        answer prefix) when continue_final_message."""
        tok = self.tokenizer
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=not continue_final_message,
                                       continue_final_message=continue_final_message)
        return tok(text if isinstance(text, str) else text[0], add_special_tokens=False)["input_ids"]

    def generate(self, messages: list[dict], n: int = 1, max_tokens: int = 64, temperature: float = 1.0,
                 top_p: float = 1.0, continue_final_message: bool = False) -> dict:
        """One chat completion body: n sampled (temperature > 0) or greedy answers to `messages`."""
        import torch

        tok = self.tokenizer
        prompt = self.prompt_ids(messages, continue_final_message)
        ids = torch.tensor([prompt])
        sample = temperature > 0
        kw = {"do_sample": sample, "max_new_tokens": max(1, min(int(max_tokens), self.cap)), "num_return_sequences": n if sample else 1,
              "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
        if sample:
            kw.update(temperature=float(temperature), top_p=float(top_p), top_k=0)
        with self.lock, _eval_mode(self.model), torch.no_grad(), full_attention():
            if self._closing:
                raise RuntimeError("the trainer is stopping")
            version = self.version
            out = self.model.generate(input_ids=ids.to(self.model.device), attention_mask=torch.ones_like(ids).to(self.model.device), **kw)
        new = out[:, ids.shape[1]:]
        rows = [new[i % new.shape[0]] for i in range(n)]  # greedy: one answer, repeated n times
        eos = {t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None}
        choices = []
        for r in rows:
            r = r.tolist()
            cut = next((i for i, t in enumerate(r) if t in eos), None)
            # Sampled ids: up to and with the stop token; a cut answer keeps every sampled token and no end token.
            choices.append({"text": tok.decode(r[:cut], skip_special_tokens=True), "finish": "stop" if cut is not None else "length",
                            "token_ids": r if cut is None else r[:cut + 1]})
        self.requests += 1
        return _completion_body(choices, prompt, self.model_name, version)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the training log readable
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the env went away (stopped at the end of training)
                    pass

            def do_GET(self):
                if self.path.rstrip("/") in ("/v1/models", "/models"):
                    return self._send(200, {"object": "list", "data": [{"id": server.model_name, "object": "model", "owned_by": "longrecall"}]})
                if self.path.rstrip("/") in ("/health", "/v1/health"):
                    return self._send(200, {"status": "ok"})
                self._send(404, {"error": {"message": f"no route {self.path}: use /v1/chat/completions"}})

            def do_POST(self):
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}: use /v1/chat/completions"}})
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                    messages = body["messages"]
                    if not isinstance(messages, list) or not messages:
                        raise ValueError("messages must be a non-empty list")
                except (ValueError, KeyError, TypeError) as e:
                    return self._send(400, {"error": {"message": f"bad request: {e}"}})
                try:
                    reply = server.generate(messages, n=int(body.get("n") or 1), max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 64),
                                            temperature=float(body.get("temperature", 1.0)), top_p=float(body.get("top_p", 1.0)),
                                            continue_final_message=bool(body.get("continue_final_message", False)))
                except Exception as e:  # noqa: BLE001 - the client gets the reason, the trainer keeps running
                    return self._send(500, {"error": {"message": f"generation failed: {type(e).__name__}: {e}"}})
                self._send(200, reply)

        return Handler


@contextlib.contextmanager
def _eval_mode(model):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)

