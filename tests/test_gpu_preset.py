"""The gpu preset's training config runs on CPU with a random tiny Qwen2 (same recipe, shrunk by overrides)."""
import json

from longrecall.config import load_config
from longrecall.models import tiny_model
from longrecall.train.recipe import LongLoraConfig, train_longlora


def test_gpu_longlora_config_trains_a_tiny_qwen2(tmp_path, tok):
    model_dir = tmp_path / "qwen2"
    tiny_model(len(tok), arch="qwen2").save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    sft = tmp_path / "sft.jsonl"
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The code for owl is 1234567. What is the code for owl?"},
            {"role": "assistant", "content": "1234567"}]
    sft.write_text("\n".join(json.dumps({"messages": chat}) for _ in range(4)) + "\n")
    cfg = load_config(LongLoraConfig, "configs/longlora-gpu.yaml", {
        "model": str(model_dir), "sft": str(sft), "pretrain": None, "max_length": 256, "max_steps": 2, "grad_accum": 1,
        "save_steps": 100, "output_dir": str(tmp_path / "out"), "bf16": False,
    })
    assert cfg.scaling_method == "yarn" and cfg.target_length == 65536 and cfg.s2attn
    train_longlora(cfg)
    info = json.loads((tmp_path / "out" / "adapter" / "longrecall_adapter.json").read_text())
    assert "yarn" in json.dumps(info)
