"""The Atropos env's glue: rollouts tokenized and masked right, rewards from niah.score, bounded failures, eval files,
config_init, curriculum."""
import asyncio
import json

import pytest

from longrecall.env.niah_env import (
    LengthRamp,
    NiahEnv,
    NiahEnvConfig,
    Rollout,
    build_group,
    draw_spec,
    eval_specs,
    grid_rows,
    tokenize_rollout,
)
from longrecall.errors import UserError
from longrecall.niah import GenSpec, generate_sample, generate_samples


def test_config_init_points_at_one_local_openai_server():
    from atroposlib.envs.base import APIServerConfig

    from longrecall.models import resolve

    env_cfg, servers = NiahEnv.config_init()
    assert isinstance(env_cfg, NiahEnvConfig) and env_cfg.use_wandb is False and env_cfg.wandb_name == "niah"
    assert isinstance(servers, list) and len(servers) == 1 and isinstance(servers[0], APIServerConfig)
    s = servers[0]
    assert s.server_type == "openai" and s.health_check is False and s.base_url.startswith("http://127.0.0.1")
    assert s.model_name == env_cfg.tokenizer_name == resolve("default")


def test_config_lists_accept_cli_strings_and_refuse_unknown_families():
    cfg = NiahEnvConfig(tasks="single,multikey", lengths="256, 512", depths="[0.25, 0.75]")
    assert cfg.tasks == ["single", "multikey"] and cfg.lengths == [256, 512] and cfg.depths == [0.25, 0.75]
    with pytest.raises(UserError, match="unknown task family 'bogus'"):
        NiahEnvConfig(tasks=["bogus"])
    with pytest.raises(UserError, match="curriculum"):
        NiahEnvConfig(curriculum="random")


def test_tokenize_rollout_masks_everything_before_the_answer(tok):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "What is the key?"}]
    tokens, masks = tokenize_rollout(tok, msgs, "It is 1234567.")
    assert len(tokens) == len(masks)
    kept = [t for t, m in zip(tokens, masks) if m != -100]
    assert [m for m in masks if m != -100] == kept
    # The answer and the end of turn the model sampled; not the template's newline after it (never sampled).
    assert tok.decode(kept) == "It is 1234567.<|im_end|>"
    assert all(m == -100 for m in masks[: len(tokens) - len(kept)])
    prompt = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=False)
    assert tokens[: len(prompt)] == list(prompt)


def test_a_truncated_answer_is_trained_without_an_end_token(tok):
    msgs = [{"role": "user", "content": "List the codes."}]
    cut, _ = tokenize_rollout(tok, msgs, Rollout("1234567, 7654", finish_reason="length"))
    done, done_masks = tokenize_rollout(tok, msgs, Rollout("1234567, 7654", finish_reason="stop"))
    assert cut == done[:-1] and done[-1] == tok.eos_token_id and tok.eos_token_id not in cut[len(cut) - 8:]
    assert tok.decode([t for t, m in zip(*tokenize_rollout(tok, msgs, Rollout("1234567, 7654", "length"))) if m != -100]) == "1234567, 7654"
    # The server's sampled ids (and prompt ids) are trained verbatim: no re-tokenization, nothing appended.
    sampled = [tok.convert_tokens_to_ids("1"), tok.convert_tokens_to_ids("2")]
    tokens, masks = tokenize_rollout(tok, msgs, Rollout("12", "length", sampled), prompt_ids=[7, 8, 9])
    assert tokens == [7, 8, 9, *sampled] and masks == [-100] * 3 + sampled
    assert done_masks[-1] == tok.eos_token_id


def test_collect_trajectories_trains_the_sampled_ids_and_tags_the_policy_version(make_env, tok, fake_server):
    env = make_env(group_size=2)
    item = generate_sample(GenSpec(task="single", length=256, seed=3), tok)
    cut_ids = tok(item.answers[0][:3], add_special_tokens=False)["input_ids"]
    prompt = tok.apply_chat_template(item.messages(), tokenize=True, add_generation_prompt=True, return_dict=False)
    answers = [{"content": item.answers[0][:3], "finish_reason": "length", "token_ids": cut_ids, "policy_version": 4},
               {"content": item.answers[0], "finish_reason": "length", "policy_version": 4}]  # cut, no ids: re-tokenized
    env.server = fake_server({item.messages()[-1]["content"]: answers}, reply={"prompt_token_ids": list(prompt)})
    group, _ = asyncio.run(env.collect_trajectories(item))
    for tokens, masks in zip(group["tokens"], group["masks"]):
        answer = [t for t, m in zip(tokens, masks) if m != -100]
        assert tokens[: len(prompt)] == list(prompt) and tok.eos_token_id not in answer
    assert [t for t, m in zip(group["tokens"][0], group["masks"][0]) if m != -100] == cut_ids
    assert group["generation_params"] == {"policy_version": 4}
    assert json.loads(json.dumps(group))["generation_params"]["policy_version"] == 4  # the API keeps generation_params


def test_the_env_is_on_policy_by_default_and_uses_one_prompt_format(make_env, tok, fake_server):
    assert NiahEnvConfig().max_batches_offpolicy == 1 and NiahEnvConfig().answer_prefix is False
    env = make_env(group_size=2, answer_prefix=True)
    item = asyncio.run(env.get_next_item())
    assert item.answer_prefix and all(s.answer_prefix for s in eval_specs(env.config))
    env.server = fake_server({item.messages()[-1]["content"]: ["1234567", "no"]})
    group, _ = asyncio.run(env.collect_trajectories(item))
    sent = env.server.calls[0]
    assert sent["messages"][-1] == {"role": "assistant", "content": item.answer_prefix}  # continued, not re-asked
    assert sent["extra_body"]["continue_final_message"] is True and sent["extra_body"]["add_generation_prompt"] is False
    prompt = tok(tok.apply_chat_template(item.messages(), tokenize=False, add_generation_prompt=True) + item.answer_prefix,
                 add_special_tokens=False)["input_ids"]
    assert len(prompt) == item.prompt_tokens and group["tokens"][0][: len(prompt)] == prompt
    assert group["messages"][0][-1]["content"] == item.answer_prefix + "1234567"
    plain = make_env(group_size=2)
    assert not asyncio.run(plain.get_next_item()).answer_prefix


def test_collect_trajectories_scores_tokens_and_masks(make_env, tok, fake_server):
    env = make_env(group_size=2)
    item = generate_sample(GenSpec(task="single", length=256, seed=3), tok)
    right, wrong = f"The answer is {item.answers[0]}.", "I do not know."
    env.server = fake_server({item.messages()[-1]["content"]: [right, wrong]})
    group, backlog = asyncio.run(env.collect_trajectories(item))
    assert backlog == [] and group["scores"] == [1.0, 0.0]
    assert env.server.calls[0]["n"] == 2 and env.server.calls[0]["max_tokens"] == item.answer_budget
    assert json.loads(env.server.calls[0]["extra_body"]["generation_config"])["do_sample"] is True
    for text, tokens, masks, chat in zip([right, wrong], group["tokens"], group["masks"], group["messages"]):
        assert len(tokens) == len(masks) and chat[-1] == {"role": "assistant", "content": text}
        assert tok.decode([t for t, m in zip(tokens, masks) if m != -100]).startswith(text)
        assert tok.decode(tokens).count(item.answers[0]) >= 1  # the needle is in the prompt
    assert group["sample"]["id"] == item.id and group["sample"]["answers"] == item.answers


def test_failing_endpoint_is_bounded(make_env, tok, fake_server):
    env = make_env(group_size=2, max_group_attempts=2, max_failed_groups=2)
    env.server = fake_server(fail=ConnectionError("refused"))
    item = generate_sample(GenSpec(task="single", length=256, seed=4), tok)
    assert asyncio.run(env.collect_trajectories(item)) == (None, [])
    assert len(env.server.calls) == 2
    with pytest.raises(SystemExit, match="2 groups in a row failed .*ConnectionError: refused.*longrecall serve"):
        asyncio.run(env.collect_trajectories(item))


def test_short_answer_lists_count_as_failures(make_env, tok, fake_server):
    env = make_env(group_size=2, max_group_attempts=1, max_failed_groups=5)
    item = generate_sample(GenSpec(task="single", length=256, seed=5), tok)
    env.server = fake_server({item.messages()[-1]["content"]: ["only one"]})
    assert asyncio.run(env.collect_trajectories(item)) == (None, [])
    assert env.failed_groups == 1


def test_evaluate_writes_grid_metrics_and_samples(make_env, tok, fake_server, tmp_path):
    env = make_env(eval_lengths=[256], eval_depths=[0.5], eval_samples=2, data_dir_to_save_evals=str(tmp_path / "ev"))
    samples = generate_samples(eval_specs(env.config), tok, progress=False)
    answers = {s.messages()[-1]["content"]: [s.answers[0] if i == 0 else "no idea"] for i, s in enumerate(samples)}
    env.server = fake_server(answers)
    metrics = asyncio.run(env.evaluate())
    assert metrics == {"eval/score": 0.5, "eval/n": 2}
    assert all(c["temperature"] == 0.0 and "extra_body" not in c and c["n"] == 1 for c in env.server.calls)
    ev = tmp_path / "ev" / "step-000000"
    grid = json.loads((ev / "grid.json").read_text())
    assert grid == [{"task": "single", "haystack": "noise", "needle_kind": "number", "length": 256, "n": 2, "score": 0.5}]
    assert json.loads((ev / "metrics.json").read_text())["results"]["all"]["eval/score"] == 0.5
    rows = [json.loads(x) for x in (ev / "samples.jsonl").read_text().splitlines()]
    assert sorted(r["score"] for r in rows) == [0.0, 1.0] and {r["id"] for r in rows} == {s.id for s in samples}
    assert env.config.data_dir_to_save_evals == str(tmp_path / "ev")


def test_each_evaluation_keeps_its_own_files(make_env, tok, fake_server, tmp_path):
    env = make_env(eval_lengths=[256], eval_depths=[0.5], eval_samples=1, data_dir_to_save_evals=str(tmp_path / "ev"))
    (s,) = generate_samples(eval_specs(env.config), tok, progress=False)
    env.server = fake_server({s.messages()[-1]["content"]: [s.answers[0]]})
    asyncio.run(env.evaluate())
    env.server = fake_server({s.messages()[-1]["content"]: ["no idea"]})
    asyncio.run(env.evaluate())  # the same step again (a rerun of `evaluate`): a new folder
    env.curr_step = 12
    asyncio.run(env.evaluate())
    runs = sorted(p.name for p in (tmp_path / "ev").iterdir())
    assert runs == ["step-000000", "step-000000_1", "step-000012"]
    scores = [json.loads((tmp_path / "ev" / r / "grid.json").read_text())[0]["score"] for r in runs]
    assert scores == [1.0, 0.0, 0.0]


def test_eval_metrics_wait_for_the_next_step_log_and_keep_the_rollout_table(make_env, tok, fake_server, tmp_path, monkeypatch):
    from atroposlib.envs.base import BaseEnv

    logged = []

    async def base_log(self, wandb_metrics=None):  # the library's wandb_log: clears the rollouts it puts in a table
        logged.append((dict(wandb_metrics or {}), list(self.rollouts_for_wandb)))
        self.rollouts_for_wandb = []

    monkeypatch.setattr(BaseEnv, "wandb_log", base_log)
    env = make_env(eval_lengths=[256], eval_depths=[0.5], eval_samples=1, data_dir_to_save_evals=str(tmp_path / "ev"))
    env.config.use_wandb = True
    env.rollouts_for_wandb = [[("rollout of this step", 1.0)]]
    (s,) = generate_samples(eval_specs(env.config), tok, progress=False)
    env.server = fake_server({s.messages()[-1]["content"]: [s.answers[0]]})
    asyncio.run(env.evaluate())
    assert logged == [] and env.rollouts_for_wandb == [[("rollout of this step", 1.0)]]  # nothing logged mid-step
    asyncio.run(env.wandb_log({"train/x": 1}))  # the step's log carries the eval metrics and the rollout table
    counts = {"train/groups_drawn": 0, "train/groups_all_equal": 0}
    assert logged == [({"train/x": 1, **counts, "eval/score": 1.0, "eval/n": 1}, [[("rollout of this step", 1.0)]])]
    asyncio.run(env.wandb_log({}))
    assert logged[-1][0] == counts  # the eval metrics are logged once


def test_the_eval_grid_covers_every_configured_haystack_and_value_kind():
    cfg = NiahEnvConfig(tasks=["single"], lengths=[256], haystacks=["noise", "prose"], needle_kinds=["number", "word"],
                        eval_depths=[0.5], eval_samples=1, tokenizer_name="x")
    assert {(s.haystack, s.needle_kind) for s in eval_specs(cfg)} == {("noise", "number"), ("noise", "word"), ("prose", "number"), ("prose", "word")}
    narrow = NiahEnvConfig(tasks=["single"], lengths=[256], haystacks=["noise", "prose"], eval_haystacks=["prose"], eval_depths=[0.5],
                           eval_samples=1, tokenizer_name="x")
    assert {s.haystack for s in eval_specs(narrow)} == {"prose"}


def test_get_next_item_is_seeded_and_follows_the_ramp(make_env):
    env = make_env(lengths=[256, 384], curriculum="length_ramp", ramp_window=2, ramp_threshold=0.5)
    first = [asyncio.run(env.get_next_item()) for _ in range(4)]
    assert {s.length for s in first} == {256}
    env.ramp.update(1.0), env.ramp.update(1.0)
    later = [asyncio.run(env.get_next_item()) for _ in range(12)]
    assert {s.length for s in later} == {256, 384}
    again = make_env(lengths=[256, 384], curriculum="length_ramp", ramp_window=2, ramp_threshold=0.5)
    assert [asyncio.run(again.get_next_item()).id for _ in range(4)] == [s.id for s in first]


def test_draw_spec_uniform_covers_the_grid_and_is_deterministic():
    cfg = NiahEnvConfig(tasks=["single", "multikey"], lengths=[256, 512, 1024], tokenizer_name="x")
    specs = [draw_spec(cfg, i) for i in range(60)]
    assert {s.length for s in specs} == {256, 512, 1024} and {s.task for s in specs} == {"single", "multikey"}
    assert [draw_spec(cfg, i) for i in range(60)] == specs
    assert len({s.seed for s in specs}) == 60
    assert {draw_spec(cfg, i, level=0).length for i in range(30)} == {256}


def test_length_ramp_waits_for_a_full_window_above_threshold():
    ramp = LengthRamp(n_levels=3, threshold=0.6, window=3)
    assert [ramp.update(r) for r in (1.0, 1.0)] == [0, 0]  # window not full yet
    assert ramp.update(0.0) == 1  # full window, mean 0.67 >= 0.6
    assert [ramp.update(r) for r in (0.0, 0.0, 0.0, 1.0)] == [1, 1, 1, 1]  # the window restarts after a step
    for _ in range(9):
        ramp.update(1.0)
    assert ramp.level == 2  # never past the last length


def test_grid_rows_and_build_group_shape(tok):
    s = generate_sample(GenSpec(task="single", length=256, seed=9), tok)
    g = build_group(tok, s, ["a", "b", "c"])
    assert len(g["tokens"]) == len(g["masks"]) == len(g["scores"]) == len(g["messages"]) == 3
    rows = grid_rows([{"task": "single", "length": 512, "score": 1.0}, {"task": "single", "length": 256, "score": 0.0},
                      {"task": "single", "length": 512, "score": 0.0}, {"task": "single", "haystack": "prose", "length": 512, "score": 1.0}])
    assert rows == [{"task": "single", "haystack": "", "needle_kind": "", "length": 256, "n": 1, "score": 0.0},
                    {"task": "single", "haystack": "", "needle_kind": "", "length": 512, "n": 2, "score": 0.5},
                    {"task": "single", "haystack": "prose", "needle_kind": "", "length": 512, "n": 1, "score": 1.0}]


@pytest.mark.parametrize("task,hops", [("single", None), ("chain", 3)])
def test_rag_and_hybrid_modes_keep_the_needles_within_the_budget(tok, task, hops):
    from longrecall.env.niah_env import with_context_mode

    s = generate_sample(GenSpec(task=task, length=2048, haystack="prose", depth=0.4, hops=hops, seed=5), tok)
    assert with_context_mode(s, tok, "full", 256) is s
    targets = [n["text"] for n in s.needles if n["role"] == "target"]
    for mode in ("rag", "hybrid"):
        r = with_context_mode(s, tok, mode, 256)
        assert len(tok(r.context, add_special_tokens=False)["input_ids"]) <= 256 < len(tok(s.context)["input_ids"])
        assert (r.question, r.answers, r.id) == (s.question, s.answers, s.id)
        if mode == "hybrid" or task == "single":  # plain top-k need not reach a chain's later hops; multi-hop must
            assert all(t in r.context for t in targets), (mode, targets)


def test_an_unknown_context_mode_is_one_line_naming_the_modes():
    with pytest.raises(UserError, match="use full, rag, hybrid"):
        NiahEnvConfig(context_mode="retrieval")


def test_evaluate_in_rag_mode_sends_the_retrieved_context(make_env, tok, fake_server, tmp_path):
    from longrecall.env.niah_env import with_context_mode

    env = make_env(lengths=[1024], eval_depths=[0.5], eval_samples=1, context_mode="rag", rag_budget=128,
                   data_dir_to_save_evals=str(tmp_path / "ev"))
    (full,) = generate_samples(eval_specs(env.config), tok, progress=False)
    shown = with_context_mode(full, tok, "rag", 128)
    env.server = fake_server({shown.messages()[-1]["content"]: [full.answers[0]]})
    metrics = asyncio.run(env.evaluate())
    assert metrics == {"eval/rag/score": 1.0, "eval/rag/n": 1}
    sent = env.server.calls[0]["messages"][-1]["content"]
    assert shown.context in sent and full.context not in sent


def test_adaptive_curriculum_moves_each_family_and_logs_it(make_env, tok, fake_server):
    """Groups a family always solves move it one rung harder (longer, more hops); the step log carries the levels
    and how many groups were all-equal (dynamic sampling's count)."""
    env = make_env(tasks=["single", "chain"], lengths=[256, 384], curriculum="adaptive", ramp_window=2, group_size=2)
    items = [asyncio.run(env.get_next_item()) for _ in range(8)]
    assert {(s.task, s.length) for s in items} <= {("single", 256), ("chain", 256)}
    chains = [s for s in items if s.task == "chain"]
    assert chains and all(len(s.chain) == 1 for s in chains)  # the first rung: 1 hop
    single = next(s for s in items if s.task == "single")
    env.server = fake_server({single.messages()[-1]["content"]: [single.answers[0], single.answers[0]]})
    for _ in range(2):
        group, _ = asyncio.run(env.collect_trajectories(single))
    assert env.adaptive.levels == {"single": 1, "chain": 0} and env.adaptive.history[-1]["length"] == 384
    assert env.groups_drawn == 2 and env.groups_dropped == 2  # both groups all-equal (1.0, 1.0)
    later = [asyncio.run(env.get_next_item()) for _ in range(12)]
    assert {s.length for s in later if s.task == "single"} == {384}


def test_evidence_credit_asks_for_evidence_and_pays_for_it(make_env, tok, fake_server):
    env = make_env(group_size=2, evidence_credit=0.5)
    item = asyncio.run(env.get_next_item())
    assert "Evidence:" in item.question and item.answer_budget > generate_sample(GenSpec(task="single", length=256, seed=0), tok).answer_budget - 1
    target = next(n for n in item.needles if n["role"] == "target")
    cited = f"Evidence:\n{target['text']}\nAnswer: {item.answers[0]}"
    env.server = fake_server({item.messages()[-1]["content"]: [cited, item.answers[0]]})
    group, _ = asyncio.run(env.collect_trajectories(item))
    assert group["scores"] == [1.0, 0.5]  # the bare answer earns the answer's half only
    with pytest.raises(Exception, match="answer prefix"):
        make_env(evidence_credit=0.5, answer_prefix=True)
