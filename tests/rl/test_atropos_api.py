"""The Atropos consumer against a real `run-api`: the test POSTs scored groups as the env would (no model server)."""
from __future__ import annotations

import json

import pytest

from longrecall.errors import UserError
from longrecall.rl.atropos_consumer import AtroposConfig, fetch_batch, register
from longrecall.rl.grpo import GrpoConfig, train_grpo


def _group(tok, scores, seed=0, version=0):
    """A scored group like NiahEnv.build_group: chat tokens, -100 before the final assistant turn, rewards, and the
    policy version that sampled it (the consumer trains only groups of its current weights)."""
    msgs = [{"role": "user", "content": f"The code for gate {seed} is 4821. What is the code for gate {seed}?"}]
    prompt = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=False)
    tokens, masks = [], []
    for i, _ in enumerate(scores):
        full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": f"The code is {4821 + i}."}], tokenize=True, return_dict=False)
        tokens.append(list(full))
        masks.append([-100] * len(prompt) + list(full[len(prompt):]))
    return {"tokens": tokens, "masks": masks, "scores": scores, "messages": None, "generation_params": {"policy_version": version}}


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


def test_registering_at_a_resumed_step_starts_the_api_there(run_api, http):
    http(run_api + "/reset_data")
    register(AtroposConfig(api_url=run_api), num_steps=5, starting_step=3)
    assert http(run_api + "/status")["current_step"] == 3  # the env counts its evals and logs from here


def test_an_idle_environment_times_out(run_api, http, tmp_path):
    http(run_api + "/reset_data")
    cfg = AtroposConfig(api_url=run_api, wait_timeout=1, poll_interval=0.2)
    register(cfg, num_steps=1)
    http(run_api + "/scored_data", {"tokens": [[1, 2]], "masks": [[-100, 2]], "scores": [1.0]})  # 1 of 8 sequences
    with pytest.raises(UserError, match=r"no scored groups from the environment in 1s \(queue: 1 groups"):
        fetch_batch(cfg)


def test_a_stopped_run_resumes_from_its_checkpoint(run_api, http, tiny_model_dir, tok, tmp_path):
    http(run_api + "/reset_data")
    out = tmp_path / "resume"
    cfg = _cfg(tiny_model_dir, run_api, out, wait_timeout=2)
    cfg.max_steps = 2
    register(cfg.atropos, num_steps=2)
    http(run_api + "/scored_data_list", [_group(tok, [1.0, 0.0, 0.0, 0.5], 1), _group(tok, [0.0, 1.0, 0.5, 0.0], 2)])
    with pytest.raises(UserError, match="no scored groups"):  # one batch, then the env "stops": step 1 is kept
        train_grpo(cfg)
    assert (out / "checkpoint-1" / "state.json").exists() and not (out / "adapter").exists()
    http(run_api + "/reset_data")
    register(cfg.atropos, num_steps=2)
    http(run_api + "/scored_data_list", [_group(tok, [1.0, 0.0, 0.0, 0.0], 3, version=1), _group(tok, [0.0, 0.0, 0.0, 1.0], 4, version=1)])
    summary = train_grpo(cfg)
    assert summary["steps"] == 2 and len(summary["rewards"]) == 2  # step 1's log came back from the checkpoint
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and (out / "adapter" / "adapter_model.safetensors").exists()


def test_launch_wires_run_api_the_env_and_the_served_policy(tiny_model_dir, tmp_path):
    # The whole loop with real processes: run-api and `niah_env serve` started by the trainer, rollouts sampled
    # from the live (tiny, random) policy over HTTP. Its answers never score, so the run must stop on "no signal"
    # after groups really arrived; the env's log shows it asked the served policy.
    from .conftest import free_port

    cfg = GrpoConfig(model=str(tiny_model_dir), via="atropos", max_steps=1, lr=1e-3, output_dir=str(tmp_path / "run"),
                     tasks=["single"], lengths=[160], num_generations=2, max_completion_length=4,
                     atropos=AtroposConfig(api_url=f"http://127.0.0.1:{free_port()}", batch_size=2, launch=True,
                                           wait_timeout=120, poll_interval=0.5, max_no_signal=2))
    with pytest.raises(UserError, match="no learning signal"):
        train_grpo(cfg)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    # stale 0: the env's groups carry the served policy's version through run-api (generation_params)
    assert [(r["trained"], r["batch_groups"], r["reward"], r["stale"]) for r in log] == [(False, 1, 0.0, 0)] * 2
    assert log[-1]["policy_requests"] >= 2  # every group was sampled from the served policy
    assert "POST /scored_data" in (tmp_path / "run" / "logs" / "api.log").read_text()


def test_launch_refuses_a_batch_that_splits_groups(tiny_model_dir, tmp_path):
    cfg = GrpoConfig(model=str(tiny_model_dir), via="atropos", num_generations=4, output_dir=str(tmp_path),
                     atropos=AtroposConfig(batch_size=6, launch=True))
    with pytest.raises(UserError, match="must be a multiple of num_generations"):
        train_grpo(cfg)


def test_a_policy_server_that_is_not_running_is_named(tiny_model_dir, dead_url, tmp_path):
    cfg = GrpoConfig(model=str(tiny_model_dir), via="atropos", output_dir=str(tmp_path),
                     atropos=AtroposConfig(api_url=dead_url, policy=dead_url + "/v1", retries=1))
    with pytest.raises(UserError, match=r"no server answers at http://127\.0\.0\.1:\d+/v1"):
        train_grpo(cfg)


def test_a_launched_environment_that_dies_is_reported_with_its_reason(tiny_model_dir, tmp_path):
    from .conftest import free_port

    cfg = GrpoConfig(model=str(tiny_model_dir), via="atropos", output_dir=str(tmp_path), num_generations=2,
                     atropos=AtroposConfig(api_url=f"http://127.0.0.1:{free_port()}", batch_size=2, launch=True, wait_timeout=120,
                                           poll_interval=0.5, env={"haystacks": "nowhere"}))
    with pytest.raises(UserError, match=r"the environment stopped \(code \d+\): .*nowhere"):
        train_grpo(cfg)


def test_a_time_budget_stops_early_and_still_saves_the_adapter(run_api, http, tiny_model_dir, tok, tmp_path):
    http(run_api + "/reset_data")
    out = tmp_path / "budget"
    cfg = _cfg(tiny_model_dir, run_api, out)
    cfg.max_steps, cfg.max_minutes = 5, 1e-6  # the budget is spent after the first step
    register(cfg.atropos, num_steps=5)
    http(run_api + "/scored_data_list", [_group(tok, [1.0, 0.0, 0.0, 0.5], 1), _group(tok, [0.0, 1.0, 0.5, 0.0], 2)])
    summary = train_grpo(cfg)
    assert summary["steps"] == 1 and (out / "adapter" / "adapter_model.safetensors").exists()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["minutes"] >= 0  # every row says when it happened: the budget curve's x-axis
