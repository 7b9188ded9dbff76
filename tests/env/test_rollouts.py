"""Rollout datasets: raw Atropos rows -> TRL records, `process` JSONL -> SFT, and failures that leave no file."""
import argparse
import json

import pytest

from longrecall.env.rollouts import (
    add_dpo_arguments,
    add_sft_arguments,
    dpo_records,
    env_flags,
    process_to_sft,
    rollout_dpo,
    rollout_sft,
    sft_records,
)
from longrecall.env.server import free_port
from longrecall.errors import UserError

PROMPT = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"}]


def chat(answer, prompt=PROMPT):
    return prompt + [{"role": "assistant", "content": answer}]


def test_sft_records_keep_rollouts_at_or_above_the_threshold_once():
    raw = [{"messages": chat("1234567"), "score": 1.0}, {"messages": chat("1234567"), "score": 1.0},
           {"messages": chat("half"), "score": 0.5}, {"messages": chat("no"), "score": 0.0}]
    assert sft_records(raw, 1.0) == [{"messages": chat("1234567")}]
    assert [r["messages"][-1]["content"] for r in sft_records(raw, 0.5)] == ["1234567", "half"]


def test_dpo_records_pair_chosen_and_rejected_on_one_prompt():
    other = [{"role": "system", "content": "S"}, {"role": "user", "content": "Other?"}]
    raw = [{"pos": chat("good"), "neg": chat("bad"), "score": 1.0},
           {"pos": chat("same"), "neg": chat("same"), "score": 1.0},  # no preference
           {"pos": chat("good"), "neg": chat("bad", other), "score": 1.0}]  # not one prompt
    assert dpo_records(raw) == [{"prompt": PROMPT, "chosen": "good", "rejected": "bad"}]


def test_process_to_sft_reads_groups(tmp_path):
    path = tmp_path / "groups.jsonl"
    groups = [{"messages": [chat("1234567"), chat("no")], "scores": [1.0, 0.0], "tokens": [[1], [2]]},
              {"messages": [chat("7654321")], "scores": [1.0], "tokens": [[3]]}]
    path.write_text("".join(json.dumps(g) + "\n" for g in groups))
    recs = process_to_sft(path, min_score=1.0)
    assert [r["messages"][-1]["content"] for r in recs] == ["1234567", "7654321"]
    (tmp_path / "bad.jsonl").write_text('{"tokens": [[1]]}\n')
    with pytest.raises(UserError, match="not an Atropos `process` output"):
        process_to_sft(tmp_path / "bad.jsonl")


def test_records_load_with_datasets(tmp_path):
    from datasets import load_dataset

    from longrecall.io import write_jsonl

    write_jsonl(tmp_path / "sft.jsonl", sft_records([{"messages": chat("x"), "score": 1.0}], 1.0))
    write_jsonl(tmp_path / "dpo.jsonl", dpo_records([{"pos": chat("a"), "neg": chat("b"), "score": 1.0}]))
    sft = load_dataset("json", data_files=str(tmp_path / "sft.jsonl"), split="train")
    dpo = load_dataset("json", data_files=str(tmp_path / "dpo.jsonl"), split="train")
    assert sft[0]["messages"][-1] == {"role": "assistant", "content": "x"}
    assert dpo[0]["chosen"] == "a" and dpo[0]["rejected"] == "b" and dpo[0]["prompt"] == PROMPT


def test_env_flags_join_lists_for_the_library_cli():
    assert env_flags({"lengths": [512, 1024], "tasks": "single", "use_wandb": False}) == [
        "--env.lengths", "512,1024", "--env.tasks", "single", "--env.use_wandb", "false"]


@pytest.mark.parametrize("fn", [rollout_sft, rollout_dpo])
def test_rollouts_against_a_dead_endpoint_fail_fast_without_output(fn, tmp_path):
    out = tmp_path / "out.jsonl"
    with pytest.raises(UserError, match="no server answers.*longrecall serve"):
        fn(out, base_url=f"http://127.0.0.1:{free_port()}/v1", groups=1, group_size=2, log_dir=tmp_path / "logs", timeout=30)
    assert not out.exists()


def test_rollouts_refuse_groups_of_one(tmp_path):
    with pytest.raises(UserError, match="group-size >= 2"):
        rollout_sft(tmp_path / "o.jsonl", base_url="http://127.0.0.1:9/v1", groups=1, group_size=1)


def test_cli_arguments_parse():
    p = argparse.ArgumentParser()
    add_sft_arguments(p)
    a = p.parse_args(["o.jsonl", "--groups", "2", "--env", "lengths=512,1024", "--min-score", "0.5"])
    assert a.groups == 2 and a.env == ["lengths=512,1024"] and a.min_score == 0.5 and a.base_url is None
    p = argparse.ArgumentParser()
    add_dpo_arguments(p)
    assert p.parse_args(["o.jsonl"]).min_margin == 0.5


def test_rollouts_name_the_served_model_on_a_mismatch(http_stub, tmp_path):
    url, routes = http_stub
    routes["/v1/models"] = (200, "application/json", '{"data": [{"id": "/m/served"}]}')
    with pytest.raises(UserError, match="serves '/m/served', not '/m/other'"):
        rollout_sft(tmp_path / "o.jsonl", base_url=url, model_name="/m/other", groups=1, group_size=2)


@pytest.mark.integration
def test_an_endpoint_that_fails_every_request_stops_the_run_without_output(http_stub, tmp_path):
    """The API, the generator and the env really run; the endpoint lists a model but answers 500: bounded, no file."""
    url, routes = http_stub
    routes["/v1/models"] = (200, "application/json", '{"data": [{"id": "/m/x"}]}')
    routes["/v1/chat/completions"] = (500, "application/json", '{"error": "boom"}')
    out = tmp_path / "o.jsonl"
    env = {"lengths": [256], "max_group_attempts": 1, "max_failed_groups": 1}
    with pytest.raises(UserError, match="the environment stopped .*1 groups in a row failed"):
        rollout_sft(out, base_url=url, groups=1, group_size=2, env=env, log_dir=tmp_path / "logs", timeout=240)
    assert not out.exists()


def test_the_generator_is_stopped_only_after_it_polls_again(tmp_path):
    import subprocess
    import sys
    import threading
    import time

    from longrecall.env.rollouts import _wait_for_next_poll

    log = tmp_path / "api.log"
    log.write_text('"GET /batch HTTP/1.1" 200\n')
    gen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        def poll_later():
            time.sleep(1.5)
            with log.open("a") as f:
                f.write('"GET /batch HTTP/1.1" 200\n"GET /batch HTTP/1.1" 200\n')
        threading.Thread(target=poll_later).start()
        start = time.monotonic()
        _wait_for_next_poll(log, gen, deadline=start + 20, grace=20)
        waited = time.monotonic() - start
        assert 1.4 < waited < 5  # waited for the poll, not for the grace period
        start = time.monotonic()
        _wait_for_next_poll(log, gen, deadline=start + 1.5, grace=20)  # no poll: bounded by the deadline
        assert time.monotonic() - start < 4
    finally:
        gen.kill()
