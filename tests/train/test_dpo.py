"""DPO with the LoRA+ adapter on a tiny random model: data normalisation, two training steps, presets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longrecall.config import load_config
from longrecall.errors import UserError
from longrecall.models import load_model, load_tokenizer, tiny_model
from longrecall.train.dpo import DpoConfig, main, preference_record, validate
from longrecall.train.lora_plus import LoraPlusConfig, apply_lora_plus, load_adapter, save_adapter

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_preference_records_become_conversations():
    rec = preference_record({"prompt": "Where is the key?", "chosen": "Under the mat.", "rejected": "I do not know."})
    assert rec["prompt"] == [{"role": "user", "content": "Where is the key?"}]
    assert rec["chosen"] == [{"role": "assistant", "content": "Under the mat."}]
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Key?"}]
    assert preference_record({"prompt": msgs, "chosen": "mat", "rejected": "door"})["prompt"] == msgs
    with pytest.raises(UserError, match="lacks"):
        preference_record({"prompt": "x", "chosen": "y"})
    with pytest.raises(UserError):
        preference_record({"prompt": 3, "chosen": "y", "rejected": "z"})


def _init_adapter(base, out):
    """A LoRA+ adapter moved off its zero init (what a LongLoRA run would hand to DPO)."""
    model = apply_lora_plus(load_model(str(base)), LoraPlusConfig())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "norm.modules_to_save" in name:
                p.add_(0.05)
    save_adapter(model, out)


def test_two_dpo_steps_on_top_of_an_sft_adapter(tmp_path, capsys):
    tok = load_tokenizer("default")
    tiny_model(len(tok)).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    _init_adapter(tmp_path / "base", tmp_path / "sft")
    rows = [{"prompt": f"The code is {700 + i}. What is the code?", "chosen": f"{700 + i}", "rejected": f"{900 - i}"} for i in range(4)]
    rows.append({"prompt": "word " * 400, "chosen": "a", "rejected": "b"})  # too long: dropped, not truncated
    (tmp_path / "dpo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    sets = {"model": tmp_path / "base", "init_adapter": tmp_path / "sft", "data": tmp_path / "dpo.jsonl", "max_steps": 2, "max_length": 128, "lr": 1e-3}
    argv = ["--config", str(CONFIGS / "dpo-cpu-smoke.yaml"), "--output-dir", str(out)] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    assert main(argv) == 0
    assert "dropped 1 DPO pairs" in capsys.readouterr().out
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log if "loss" in row] == [1, 2]
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert any("embed_tokens" in k for k in weights) and any("norm" in k for k in weights) and any("lora_A" in k for k in weights)

    # The DPO adapter sits on base + SFT adapter: switched off, it must be exactly the SFT model (DPO's reference).
    ids = torch.randint(0, len(tok), (1, 12), generator=torch.Generator().manual_seed(0))
    dpo = load_adapter(str(tmp_path / "base"), out / "adapter")
    sft = load_adapter(str(tmp_path / "base"), tmp_path / "sft")
    with torch.no_grad(), dpo.disable_adapter():
        assert torch.allclose(dpo(input_ids=ids).logits, sft(input_ids=ids).logits, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(dpo(input_ids=ids).logits, sft(input_ids=ids).logits, atol=1e-5)


def test_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="beta"):
        validate(DpoConfig(beta=0))
    bad = tmp_path / "bad.yaml"
    bad.write_text("bta: 0.1\n")
    with pytest.raises(UserError, match="unknown config key"):
        load_config(DpoConfig, bad)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("dpo-*.yaml")), ids=lambda p: p.name)
def test_every_dpo_preset_validates(path):
    validate(load_config(DpoConfig, path))
