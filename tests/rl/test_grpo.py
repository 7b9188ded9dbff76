"""The GRPO reward, prompts and presets: niah.score as a TRL reward function, generator prompts, every configs/grpo-*.yaml."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from longrecall.config import load_config
from longrecall.errors import UserError
from longrecall.niah import GenSpec, generate_sample, score
from longrecall.rl.grpo import (GrpoConfig, build_rows, config_from_args, draw_specs, niah_reward, prompt_text,
                               resolve_prompt_format, validate)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_reward_is_niah_score_of_each_completion_against_its_own_sample(tok):
    a = generate_sample(GenSpec(task="single", length=160, seed=1), tok)
    b = generate_sample(GenSpec(task="all_needles", length=400, seed=2, n_needles=2), tok)
    sa, sb = (json.dumps(s.to_dict()) for s in (a, b))
    good_a, good_b = f"It is {a.answers[0]}.", " and ".join(b.answers)
    rewards = niah_reward([good_a, "no idea", good_b, b.answers[0]], sample=[sa, sa, sb, sb], prompts=["p"] * 4, trainer_state=None)
    assert rewards == pytest.approx([1.0, 0.0, 1.0, score(b, b.answers[0])]) and 0 < rewards[3] < 1  # one of two values
    chat = [[{"role": "assistant", "content": good_a}]]
    assert niah_reward(chat, sample=[a.to_dict()]) == [1.0]


def test_rows_are_seeded_train_phrasing_prompts_that_carry_the_scoring_fields(tok):
    cfg = GrpoConfig(tasks=["single", "chain"], lengths=[200, 300], n_prompts=4, seed=3, answer_prefix=True)
    rows = build_rows(cfg, tok)
    assert rows == build_rows(cfg, tok) and len(rows) == 4
    assert all(s.phrasing == "train" and s.answer_prefix for s in draw_specs(cfg))
    # No adapter and no explicit format: the data commands' format (no answer prefix), as eval grids then ask.
    assert resolve_prompt_format(GrpoConfig()).answer_prefix is False
    assert {json.loads(r["sample"])["task"] for r in rows} <= {"single", "chain"}
    spec = draw_specs(cfg)[0]
    sample = generate_sample(spec, tok)
    text = prompt_text(tok, sample)
    assert text.endswith(sample.answer_prefix) and sample.context in text
    # TRL tokenizes text prompts with the tokenizer's defaults: no extra BOS, the length the generator measured.
    assert len(tok(text)["input_ids"]) == sample.prompt_tokens
    assert json.loads(rows[0]["sample"])["answers"] == sample.answers


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("grpo-*.yaml")), ids=lambda p: p.name)
def test_every_grpo_preset_loads_and_validates(path):
    cfg = validate(load_config(GrpoConfig, path))
    assert cfg.num_generations >= 2 and cfg.phrasing == "train"
    assert cfg.s2attn is False  # RL trains chats: full attention, as sampled (validate refuses true)
    if "gpu" in path.name:
        # an inference server does the rollouts: TRL's vLLM server mode, or the server Atropos' env samples
        assert (cfg.use_vllm and cfg.vllm_server_base_url) or (cfg.via == "atropos" and cfg.atropos.policy.startswith("http"))
    else:
        assert not cfg.use_vllm and max(cfg.lengths) <= 1024  # CPU-sized


def test_cli_overrides_and_bad_settings():
    cfg = config_from_args(["--config", str(CONFIGS / "grpo-cpu-smoke.yaml"), "--via", "atropos", "--set", "atropos.batch_size=16", "--output-dir", "x"])
    assert (cfg.via, cfg.atropos.batch_size, cfg.output_dir) == ("atropos", 16, "x")
    with pytest.raises(UserError, match="num_generations must be >= 2"):
        validate(GrpoConfig(num_generations=1))
    with pytest.raises(UserError, match="tasks must be families"):
        validate(GrpoConfig(tasks=["nope"]))
    with pytest.raises(UserError, match="unknown config key 'num_generation'"):
        config_from_args(["--set", "num_generation=4"])
    with pytest.raises(UserError, match="max_minutes must be above 0"):
        validate(GrpoConfig(max_minutes=0))


def test_evidence_credit_rows_and_reward_and_the_env_gets_one_config(tok):
    from longrecall.rl.atropos_consumer import env_settings
    from longrecall.rl.grpo import evidence_reward

    cfg = GrpoConfig(tasks=["single"], lengths=[256], n_prompts=2, evidence_credit=0.4, answer_prefix=False)
    rows = build_rows(validate(cfg), tok)
    assert all("Evidence:" in r["prompt"] for r in rows)
    d = json.loads(rows[0]["sample"])
    target = next(n for n in d["needles"] if n["role"] == "target")
    cited, bare = f"Evidence:\n{target['text']}\nAnswer: {d['answers'][0]}", d["answers"][0]
    assert evidence_reward(0.4)([cited, bare], sample=[rows[0]["sample"]] * 2) == pytest.approx([1.0, 0.6])
    env = env_settings(GrpoConfig(via="atropos", curriculum="adaptive", evidence_credit=0.4, dynamic_sampling=True))
    assert (env["curriculum"], env["evidence_credit"], env["ensure_scores_are_not_same"]) == ("adaptive", 0.4, True)
    for bad, words in [(dict(curriculum="adaptive"), "via: atropos"), (dict(dynamic_sampling=True), "via: atropos"),
                       (dict(evidence_credit=2.0), "evidence_credit"), (dict(evidence_credit=0.3, answer_prefix=True), "answer prefix")]:
        with pytest.raises(UserError, match=words):
            validate(GrpoConfig(**bad))
