"""The gpu preset's training config trains on CPU a random tiny Qwen2, S²-Attn included (same recipe, shrunk by overrides).

Only the model, the data files, the lengths and the step counts are overridden; everything else (S²-Attn and its
group fraction, YaRN to 64k, LoRA+ targets, bf16 autocast, gradient checkpointing, the chunked loss) is the preset's.
"""
import json
from dataclasses import asdict

import torch

import longrecall.train.recipe as recipe
import longrecall.train.s2attn as s2attn
from longrecall.config import load_config
from longrecall.models import tiny_model
from longrecall.train.lora_plus import load_adapter, read_adapter_info
from longrecall.train.recipe import LongLoraConfig, train_longlora

PRESET = "configs/longlora-gpu.yaml"


def test_gpu_longlora_config_trains_a_tiny_qwen2_with_s2attn_on_its_blocks(tmp_path, tok, monkeypatch):
    model_dir = tmp_path / "qwen2"
    tiny_model(len(tok), arch="qwen2").save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    sft, pretrain = tmp_path / "sft.jsonl", tmp_path / "pretrain.jsonl"
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The code for owl is 1234567. What is the code for owl?"},
            {"role": "assistant", "content": "1234567"}]
    sft.write_text("\n".join(json.dumps({"messages": chat}) for _ in range(4)) + "\n")
    pretrain.write_text("".join(json.dumps({"text": f"Chapter {i}. The tide came in over the old harbour wall. " * 30}) + "\n" for i in range(2)))
    overrides = {"model": str(model_dir), "sft": str(sft), "pretrain": str(pretrain), "max_length": 256, "max_steps": 3,
                 "grad_accum": 2, "warmup_steps": 1, "save_steps": 100, "output_dir": str(tmp_path / "out")}
    cfg = load_config(LongLoraConfig, PRESET, overrides)
    preset = load_config(LongLoraConfig, PRESET)
    assert {k: v for k, v in asdict(cfg).items() if k not in overrides} == {k: v for k, v in asdict(preset).items() if k not in overrides}
    assert cfg.s2attn and not cfg.s2attn_sft and cfg.scaling_method == "yarn"

    calls, steps = [0], []
    real = s2attn._grouped_sdpa

    def counting(*args, **kwargs):  # S²-Attn's grouped path; full attention never reaches it
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(s2attn, "_grouped_sdpa", counting)
    make = recipe._trainer_cls
    im_start = tok.convert_tokens_to_ids("<|im_start|>")

    def recording_cls():
        class Recording(make()):
            def training_step(self, model, inputs, *args, **kwargs):
                before = calls[0]
                out = super().training_step(model, inputs, *args, **kwargs)
                steps.append((int(inputs["input_ids"][0, 0]) == im_start, inputs["input_ids"].shape[1], calls[0] - before))
                return out

        return Recording

    monkeypatch.setattr(recipe, "_trainer_cls", recording_cls)
    summary = train_longlora(cfg)

    assert summary["steps"] == 3 and len(steps) == 6 and torch.isfinite(torch.tensor(summary["final_loss"]))
    blocks = [(n, c) for chat, n, c in steps if not chat]
    chats = [c for chat, _, c in steps if chat]
    assert blocks and chats, steps
    # Every block ran S²-Attn in both layers (forward, and again in the checkpointed recomputation); chats never did.
    assert all(c >= 2 * 2 for _, c in blocks) and all(c == 0 for c in chats), steps
    assert any(n == 256 for n, _ in blocks)  # full-length blocks: four S²-Attn groups of 64 tokens

    info = read_adapter_info(tmp_path / "out" / "adapter")
    assert info["positions"]["rope_parameters"]["rope_type"] == "yarn" and info["positions"]["factor"] == 8  # 65536 / 8192
    loaded = load_adapter(str(model_dir), tmp_path / "out" / "adapter")
    assert loaded.get_base_model().config.max_position_embeddings == 65536
    assert loaded.get_base_model().config._attn_implementation == "sdpa"  # evaluation: full attention
