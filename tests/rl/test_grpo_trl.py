"""GRPO through TRL on a tiny random Llama: two steps end to end via the CLI entry, the real reward through TRL's reward
path, and full attention in the loss forward."""
from __future__ import annotations

import json
import zlib

import pytest
import torch
from safetensors.torch import load_file

from longrecall.errors import UserError
from longrecall.rl import grpo
from longrecall.rl.grpo import GrpoConfig, make_trainer


def test_two_trl_steps_log_rewards_and_save_the_lora_plus_adapter(tiny_model_dir, tmp_path, monkeypatch):
    # A random model never finds the needle (reward 0 everywhere, no signal), so score by a checksum of the
    # text instead; the call still goes through niah_reward with the sample column TRL passes along.
    seen = []

    def fake_score(sample, text):
        seen.append(sample)
        return float(zlib.crc32(text.encode()) % 2)

    monkeypatch.setattr(grpo, "score", fake_score)
    out = tmp_path / "run"
    argv = ["--set", f"model={tiny_model_dir}", "--set", "lengths=[128]", "--set", "n_prompts=2", "--set", "max_steps=2",
            "--set", "max_completion_length=8", "--set", "lr=1e-3", "--output-dir", str(out)]
    assert grpo.main(argv) == 0
    assert len(seen) == 8 and all(s["metric"] == "contains" and s["answers"] for s in seen)  # 2 steps x 4 completions
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(0.0 <= r["reward"] <= 1.0 for r in steps)
    assert any(r["reward_std"] > 0 for r in steps)
    assert (out / "reward.png").stat().st_size > 0 and (out / "config.yaml").exists()
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert any("embed_tokens" in k for k in weights) and any("norm" in k for k in weights)  # LoRA+: embeddings + norms
    assert any(float(v.abs().max()) > 0 for k, v in weights.items() if "lora_B" in k)  # LoRA B starts at 0: it moved
    info = json.loads((out / "adapter" / "longrecall_adapter.json").read_text())
    assert info["recipe"] == "grpo-trl" and info["steps"] == 2

    # RL after SFT: continue an existing adapter (here the one just written) instead of a fresh one.
    again = tmp_path / "again"
    assert grpo.main(argv[:-2] + ["--set", f"adapter={out / 'adapter'}", "--set", "max_steps=1", "--output-dir", str(again)]) == 0
    moved = load_file(again / "adapter" / "adapter_model.safetensors")
    assert moved.keys() == weights.keys()
    assert any(not torch.equal(moved[k], weights[k]) for k in weights if "lora_" in k)


def test_the_real_reward_runs_through_trl_and_is_what_the_log_reports(tiny_model_dir, tmp_path, monkeypatch):
    # The real niah score, watched (not replaced): every completion TRL generated is scored against its own sample,
    # and the logged step reward is the mean of those scores.
    real, seen = grpo.score, []

    def watched(sample, text):
        value = real(sample, text)
        seen.append((sample, text, value))
        return value

    monkeypatch.setattr(grpo, "score", watched)
    out = tmp_path / "real"
    argv = ["--set", f"model={tiny_model_dir}", "--set", "lengths=[128]", "--set", "n_prompts=2", "--set", "max_steps=1",
            "--set", "max_completion_length=8", "--output-dir", str(out)]
    assert grpo.main(argv) == 0
    assert len(seen) == 4 and all(isinstance(s, dict) and s["answers"] and s["needles"] for s, _, _ in seen)
    assert all(v == real(s, t) for s, t, v in seen)  # deterministic: the value logged is the reward's own
    assert real(seen[0][0], f"It is {seen[0][0]['answers'][0]}.") == 1.0  # and the same samples pay a right answer
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    step = next(r for r in log if "reward" in r)
    assert step["reward"] == pytest.approx(sum(v for _, _, v in seen) / len(seen))


def _padded_batch(tok):
    """Two prompt+completion rows as TRL builds them: prompts left-padded, completions right-padded."""
    pad = tok.pad_token_id
    p0, c0 = [101, 102, 103, 104, 105], [201, 202, 203]
    p1, c1 = [111, 112, 113, 114, 115, 116, 117], [211, 212, 213, 214]
    ids = torch.tensor([[pad, pad] + p0 + c0 + [pad], p1 + c1])
    mask = torch.tensor([[0, 0] + [1] * 8 + [0], [1] * 11])
    return ids, mask, 4


def test_the_grpo_loss_forward_uses_full_attention_for_chats(tiny_model_dir, tmp_path, tok):
    # S²-Attn in the loss forward would score the chats differently from how they were sampled (full attention)
    # and hide the needle from the answer: RL refuses it, and the training forward equals the full-attention one.
    from longrecall.rl.atropos_consumer import sequence_logps
    from longrecall.train.s2attn import ATTN_NAME

    with pytest.raises(UserError, match="s2attn: true is refused in RL.*full attention"):
        grpo.validate(GrpoConfig(s2attn=True))
    cfg = GrpoConfig(model=str(tiny_model_dir), lengths=[128], n_prompts=1, max_steps=1, max_completion_length=6,
                     bf16=False, output_dir=str(tmp_path / "full"))
    trainer, _ = make_trainer(cfg)
    model = trainer.model
    assert model.get_base_model().config._attn_implementation != ATTN_NAME
    ids, mask, keep = _padded_batch(tok)
    completion = mask[:, -keep:].bool()
    with torch.no_grad():
        model.eval()
        sampled = trainer._get_per_token_logps_and_entropies(model, ids, mask, keep)[0]
        flat = sequence_logps(model, ids[1].tolist(), keep)
        model.train()  # the loss forward (TRL path and the Atropos consumer's) sees the same attention
        trained = trainer._get_per_token_logps_and_entropies(model, ids, mask, keep)[0]
        assert torch.allclose(sequence_logps(model, ids[1].tolist(), keep), flat, atol=1e-5) and flat.shape == (keep,)
    assert torch.allclose(trained[completion], sampled[completion], atol=1e-5)
