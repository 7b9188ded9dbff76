"""The live policy served over HTTP (OpenAI chat completions), on the tiny random model."""
from __future__ import annotations

import urllib.error

import pytest

from longrecall.models import load_model, load_tokenizer
from longrecall.rl.policy_server import MODEL_NAME, PolicyServer

CHAT = [{"role": "user", "content": "What is the code for gate 7?"}]


@pytest.fixture
def served(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir), dtype="float32"), load_tokenizer(str(tiny_model_dir))
    model.train()  # as in the trainer: the server must switch to eval for generation and back
    with PolicyServer(model, tok) as server:
        yield server, model


def test_models_and_sampled_completions_follow_the_openai_shape(served, http):
    server, model = served
    assert http(server.base_url + "/models")["data"][0]["id"] == MODEL_NAME
    reply = http(server.base_url + "/chat/completions", {"model": MODEL_NAME, "messages": CHAT, "n": 3, "max_tokens": 6, "temperature": 1.0})
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2]
    assert all(isinstance(c["message"]["content"], str) and c["finish_reason"] in ("stop", "length") for c in reply["choices"])
    assert 0 < reply["usage"]["completion_tokens"] <= 18 and reply["usage"]["prompt_tokens"] > 5
    assert model.training and server.requests == 1


def test_greedy_answers_repeat_and_follow_the_weights(served, http):
    import torch

    server, model = served
    body = {"messages": CHAT, "n": 2, "max_tokens": 8, "temperature": 0}
    first = [c["message"]["content"] for c in http(server.base_url + "/chat/completions", body)["choices"]]
    assert first[0] == first[1]
    with server.lock, torch.no_grad():  # an "optimizer step": the next rollout sees it
        model.get_output_embeddings().weight.zero_()  # all logits equal: greedy repeats token 0, a special token
    second = http(server.base_url + "/chat/completions", body)["choices"]
    assert first[0] != "" and [c["message"]["content"] for c in second] == ["", ""]


def test_bad_requests_get_a_400_with_the_reason(served, http):
    server, _ = served
    with pytest.raises(urllib.error.HTTPError) as e:
        http(server.base_url + "/chat/completions", {"n": 1})
    assert e.value.code == 400 and b"messages" in e.value.read()
