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


def test_replies_carry_the_sampled_ids_the_prompt_ids_and_the_policy_version(served, http, tok):
    from longrecall.env.niah_env import Rollout, prompt_token_ids, tokenize_rollout

    server, model = served
    body = {"messages": CHAT, "n": 3, "max_tokens": 5, "temperature": 1.0}
    reply = http(server.base_url + "/chat/completions", body)
    assert reply["prompt_token_ids"] == prompt_token_ids(tok, CHAT) and reply["policy_version"] == 0
    for c in reply["choices"]:
        ids = c["token_ids"]
        if c["finish_reason"] == "length":  # cut: every sampled token, no end token added
            assert len(ids) == 5 and tok.eos_token_id not in ids
        else:  # stopped: the sampled stop token ends the ids
            assert ids[-1] in (tok.eos_token_id, tok.pad_token_id) and len(ids) <= 5
        assert c["policy_version"] == 0
    tokens, masks = tokenize_rollout(tok, CHAT, Rollout(c["message"]["content"], c["finish_reason"], c["token_ids"]), reply["prompt_token_ids"])
    assert [t for t, m in zip(tokens, masks) if m != -100] == c["token_ids"]
    with server.lock:  # the trainer's step: later rollouts say so
        server.version += 1
    assert http(server.base_url + "/chat/completions", body)["policy_version"] == 1


def test_a_cut_answer_reports_length_and_no_end_token(served, http, tok):
    server, model = served
    # Never stop: the end-of-turn and pad tokens can not be generated, so every answer runs into max_tokens.
    model.generation_config.suppress_tokens = [t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None]
    reply = http(server.base_url + "/chat/completions", {"messages": CHAT, "n": 2, "max_tokens": 4, "temperature": 0})
    assert [c["finish_reason"] for c in reply["choices"]] == ["length", "length"]
    assert all(len(c["token_ids"]) == 4 and tok.eos_token_id not in c["token_ids"] for c in reply["choices"])


def test_an_answer_prefix_is_continued(served, http, tok):
    from longrecall.env.niah_env import prompt_token_ids

    server, _ = served
    chat = CHAT + [{"role": "assistant", "content": "The code is"}]
    reply = http(server.base_url + "/chat/completions", {"messages": chat, "n": 1, "max_tokens": 3, "temperature": 0,
                                                         "continue_final_message": True, "add_generation_prompt": False})
    assert reply["prompt_token_ids"] == prompt_token_ids(tok, CHAT, "The code is")
