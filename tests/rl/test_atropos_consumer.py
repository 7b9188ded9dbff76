"""The Atropos consumer's batch -> loss math on fake batches, and its one-line errors (no server needed)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from longrecall.errors import UserError
from longrecall.rl import atropos_consumer as C
from longrecall.rl.atropos_consumer import AtroposConfig, batch_to_examples, group_advantages, pg_loss


def _group(scores, n_prompt=3, n_answer=2, advantages=None):
    toks = [[10 + i, 11, 12, 20 + i, 21] for i in range(len(scores))]
    masks = [[-100] * n_prompt + t[n_prompt:] for t in toks]
    g = {"tokens": toks, "masks": masks, "scores": scores}
    if advantages is not None:
        g["advantages"] = advantages
    return g


def test_group_advantages_are_normalized_within_the_group():
    adv = group_advantages([1.0, 0.0, 0.0, 0.0])
    mean, std = 0.25, math.sqrt(0.75 / 3)  # sample std, as TRL's GRPO
    assert adv == pytest.approx([(1 - mean) / (std + 1e-4)] + [(0 - mean) / (std + 1e-4)] * 3)
    assert sum(adv) == pytest.approx(0.0, abs=1e-9)
    assert group_advantages([0.5, 0.5, 0.5]) is None  # no signal
    assert group_advantages([1.0]) is None


def test_batch_to_examples_skips_and_counts_equal_groups_and_weights_only_answer_tokens():
    batch = [_group([1.0, 0.0]), _group([0.3, 0.3]), _group([0.0, 0.0, 0.0, 0.0])]
    examples, stats = batch_to_examples(batch)
    assert stats["groups"] == 3 and stats["skipped_equal"] == 2 and stats["sequences"] == 2
    assert len(stats["rewards"]) == 8
    win, lose = examples
    assert win["weights"][:3] == [0.0, 0.0, 0.0] and lose["weights"][:3] == [0.0, 0.0, 0.0]
    assert win["weights"][3] > 0 > lose["weights"][3] and win["weights"][3] == win["weights"][4]
    assert win["tokens"] == batch[0]["tokens"][0]


def test_env_supplied_advantages_replace_the_group_normalized_ones():
    given = [[9.0] * 5, [-2.0] * 5]
    examples, stats = batch_to_examples([_group([0.5, 0.5], advantages=given)])
    assert stats["skipped_equal"] == 0
    assert [ex["weights"] for ex in examples] == [[0, 0, 0, 9.0, 9.0], [0, 0, 0, -2.0, -2.0]]


def test_pg_loss_gradient_is_minus_advantage_over_answer_tokens():
    logps = torch.tensor([0.0, -1.0, -2.0, -0.5], requires_grad=True)
    weights = torch.tensor([0.0, 2.0, -1.0, 0.5])
    loss = pg_loss(logps, weights, n_tokens=3)
    assert float(loss.detach()) == pytest.approx(-(2 * -1 + -1 * -2 + 0.5 * -0.5) / 3)
    loss.backward()
    assert logps.grad.tolist() == pytest.approx((-weights / 3).tolist())


def test_a_positive_advantage_raises_the_sequence_probability(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    seq = [1, 200, 300, 400, 500]
    ex = {"tokens": seq, "weights": [0, 0, 0, 1.0, 1.0]}
    assert C.sequence_logps(model, seq).shape == (4,) and C.sequence_logps(model, seq, keep=2).shape == (2,)
    before = float(C.sequence_logps(model, seq, keep=2).sum())  # log p of tokens 3 and 4
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    C.batch_loss(model, [ex])
    opt.step()
    assert float(C.sequence_logps(model, seq, keep=2).sum()) > before + 1e-3


def test_mismatched_tokens_and_masks_are_a_user_error():
    g = _group([1.0, 0.0])
    g["masks"][0] = g["masks"][0][:-1]
    with pytest.raises(UserError, match="mask entries"):
        batch_to_examples([g])


def test_api_not_running_is_one_line_after_bounded_retries(dead_url):
    cfg = AtroposConfig(api_url=dead_url, retries=2, request_timeout=1)
    with pytest.raises(UserError, match="no Atropos API answers.*run-api") as e:
        C.register(cfg, num_steps=1)
    assert "\n" not in str(e.value)


def test_environment_not_answering_times_out_with_the_fix(monkeypatch):
    replies = []

    def fake_request(cfg, path, body=None):
        replies.append(path)
        return {"batch": None} if path == "/batch" else {"current_step": 0, "queue_size": 1}

    monkeypatch.setattr(C, "_request", fake_request)
    clock = iter(range(100))
    with pytest.raises(UserError, match="no scored groups from the environment in 3s.*env serve"):
        C.fetch_batch(AtroposConfig(wait_timeout=3), sleep=lambda s: None, clock=lambda: next(clock))
    assert replies.count("/batch") == 3 and replies[-1] == "/status"


def test_a_forgotten_trainer_is_told_to_restart(monkeypatch):
    monkeypatch.setattr(C, "_request", lambda cfg, path, body=None: {"status": "error", "message": "Trainer not registered."})
    with pytest.raises(UserError, match="restart the training command"):
        C.fetch_batch(AtroposConfig())


def _tagged(scores, version):
    g = _group(scores)
    if version is not None:
        g["generation_params"] = {"policy_version": version}
    return g


def test_fresh_groups_keep_only_the_current_policy_version():
    batch = [_tagged([1.0, 0.0], 3), _tagged([1.0, 0.0], 2), _tagged([0.0, 1.0], None), _tagged([0.0, 1.0], 3)]
    fresh, dropped = C.fresh_groups(batch, 3)
    assert fresh == [batch[0], batch[3]] and dropped == 2
    assert C.policy_version(batch[1]) == 2 and C.policy_version(batch[2]) is None


def test_the_self_served_policy_trains_only_rollouts_of_its_current_weights_and_resumes_at_its_step(tiny_model_dir, tmp_path, monkeypatch):
    from longrecall.rl.grpo import GrpoConfig, train_grpo

    registered, batches = [], []
    monkeypatch.setattr(C, "register", lambda cfg, num_steps, out_dir="", starting_step=0: registered.append(starting_step) or 1)
    monkeypatch.setattr(C, "fetch_batch", lambda cfg, check=None, **kw: batches.pop(0))
    # Step 0 trains A (sampled at version 0). B was sampled at version 0 too, but arrives after the step: stale, dropped
    # (atroposlib queues up to max_batches_offpolicy batches ahead). C (version 1) trains; D has no tag: dropped.
    batches += [[_tagged([1.0, 0.0], 0)], [_tagged([1.0, 0.0], 0)], [_tagged([0.0, 1.0], 1), _tagged([1.0, 0.0], None)]]
    cfg = GrpoConfig(model=str(tiny_model_dir), via="atropos", num_generations=2, max_steps=2, save_steps=1, lr=1e-3,
                     bf16=False, output_dir=str(tmp_path / "run"), atropos=AtroposConfig(batch_size=2, policy="self"))
    summary = train_grpo(cfg)
    assert summary["steps"] == 2 and summary["stale"] == 2 and batches == [] and registered == [0]
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [(r["trained"], r["stale"]) for r in log] == [(True, 0), (False, 1), (True, 1)]
    # Resume from checkpoint-1: the API is told the step, and the served weights are version 1 again.
    batches += [[_tagged([1.0, 0.0], 0)], [_tagged([1.0, 0.0], 1)], [_tagged([0.0, 1.0], 2)]]
    summary = train_grpo(GrpoConfig(**{**cfg.__dict__, "max_steps": 3}))
    assert registered == [0, 1] and summary["steps"] == 3 and batches == []


def test_register_tells_the_api_the_resumed_step(monkeypatch):
    sent = []
    monkeypatch.setattr(C, "_request", lambda cfg, path, body=None: sent.append(body) or {"uuid": 7})
    assert C.register(AtroposConfig(), num_steps=10, starting_step=4) == 7
    assert sent[0]["starting_step"] == 4 and sent[0]["num_steps"] == 10


def test_the_launched_env_queues_one_batch_ahead():
    from longrecall.rl.grpo import GrpoConfig

    assert C.env_settings(GrpoConfig())["max_batches_offpolicy"] == 1


def test_env_dynamics_count_dropped_groups_and_collect_curriculum_moves(tmp_path):
    from longrecall.rl.atropos_consumer import env_dynamics

    assert env_dynamics(tmp_path) == {}  # the env ran elsewhere: nothing to read
    (tmp_path / "logs").mkdir()
    move = {"groups": 8, "family": "chain", "from": 0, "level": 1, "success": 0.8, "length": 768}
    (tmp_path / "logs" / "env.log").write_text("NiahEnvConfig(\nScores are the same in a group, skipping...\n"
                                              f"curriculum: {json.dumps(move)}\nScores are the same in a group, skipping...\n")
    assert env_dynamics(tmp_path) == {"groups_all_equal_dropped_by_env": 2, "curriculum_moves": 1}
    assert [json.loads(x) for x in (tmp_path / "curriculum.jsonl").read_text().splitlines()] == [move]
    assert (tmp_path / "curriculum.png").stat().st_size > 0
