"""The Atropos consumer against a real `run-api`: the test POSTs scored groups as the env would (no model server)."""
from __future__ import annotations

import json

import pytest

from longrecall.errors import UserError
from longrecall.rl.atropos_consumer import AtroposConfig, fetch_batch, register
from longrecall.rl.grpo import GrpoConfig, train_grpo


def _group(tok, scores, seed=0):
    """A scored group like NiahEnv.build_group: chat tokens, -100 before the final assistant turn, rewards."""
    msgs = [{"role": "user", "content": f"The code for gate {seed} is 4821. What is the code for gate {seed}?"}]
    prompt = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=False)
    tokens, masks = [], []
    for i, _ in enumerate(scores):
        full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": f"The code is {4821 + i}."}], tokenize=True, return_dict=False)
        tokens.append(list(full))
        masks.append([-100] * len(prompt) + list(full[len(prompt):]))
    return {"tokens": tokens, "masks": masks, "scores": scores, "messages": None}


def _cfg(tiny_model_dir, url, out, **atropos) -> GrpoConfig:
    a = {"api_url": url, "batch_size": 8, "wait_timeout": 20, "poll_interval": 0.2, "retries": 2, **atropos}
    return GrpoConfig(model=str(tiny_model_dir), via="atropos", max_steps=1, lr=1e-3, save_steps=1, output_dir=str(out),
                      atropos=AtroposConfig(**a))


def test_consumer_registers_pulls_skips_equal_groups_and_trains(run_api, http, tiny_model_dir, tok, tmp_path):
    http(run_api + "/reset_data")
    cfg = _cfg(tiny_model_dir, run_api, tmp_path / "run")
    register(cfg.atropos, num_steps=1)
    assert http(run_api + "/info") == {"batch_size": 8, "max_token_len": 2048}
    # Batch A: one group with signal + one equal group; batch B: two equal groups. The API hands out the newest
    # complete batch first, so B (no signal: skipped, no step) comes before A (one step on A's 4 sequences).
    a = [_group(tok, [1.0, 0.0, 0.0, 0.5], 1), _group(tok, [1.0] * 4, 2)]
    b = [_group(tok, [0.0] * 4, 3), _group(tok, [0.0] * 4, 4)]
    assert http(run_api + "/scored_data_list", a + b)["groups_processed"] == 4
    summary = train_grpo(cfg)
    assert summary["steps"] == 1 and summary["skipped_equal"] == 3
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [(r["trained"], r["skipped_equal"]) for r in log] == [(False, 2), (True, 1)]
    assert log[1]["sequences"] == 4 and log[1]["reward"] == pytest.approx(5.5 / 8) and log[1]["grad_norm"] > 0
    assert (tmp_path / "run" / "reward.png").stat().st_size > 0
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()
    assert http(run_api + "/status")["queue_size"] == 0


def test_only_equal_groups_stop_with_a_no_signal_error(run_api, http, tiny_model_dir, tok, tmp_path):
    http(run_api + "/reset_data")
    cfg = _cfg(tiny_model_dir, run_api, tmp_path / "flat", max_no_signal=1)
    register(cfg.atropos, num_steps=1)
    http(run_api + "/scored_data_list", [_group(tok, [0.0] * 4, 5), _group(tok, [0.0] * 4, 6)])
    with pytest.raises(UserError, match="no learning signal"):
        train_grpo(cfg)


def test_an_idle_environment_times_out(run_api, http, tmp_path):
    http(run_api + "/reset_data")
    cfg = AtroposConfig(api_url=run_api, wait_timeout=1, poll_interval=0.2)
    register(cfg, num_steps=1)
    http(run_api + "/scored_data", {"tokens": [[1, 2]], "masks": [[-100, 2]], "scores": [1.0]})  # 1 of 8 sequences
    with pytest.raises(UserError, match=r"no scored groups from the environment in 1s \(queue: 1 groups"):
        fetch_batch(cfg)
