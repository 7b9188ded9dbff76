"""Model loading choices that depend on the hardware: bf16 only where it is native."""
import torch

from longrecall import models as M


def _cpu(monkeypatch, bf16: bool, amx: bool = False):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


def test_auto_dtype_is_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    _cpu(monkeypatch, bf16=False)
    assert not M.fast_bf16()
    assert M.resolve_dtype("auto") == "float32"
    assert M.resolve_dtype("bfloat16") == "bfloat16"  # an explicit choice is kept


def test_auto_dtype_is_bf16_with_avx512_bf16_or_amx(monkeypatch):
    _cpu(monkeypatch, bf16=True)
    assert M.resolve_dtype("auto") == "bfloat16"
    _cpu(monkeypatch, bf16=False, amx=True)
    assert M.resolve_dtype("auto") == "bfloat16"


def test_training_asks_bf16_only_where_native_and_says_so(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _cpu(monkeypatch, bf16=False)
    assert M.train_bf16(True) is False
    assert "no native bf16" in capsys.readouterr().out
    assert M.train_bf16(False) is False
    _cpu(monkeypatch, bf16=True)
    assert M.train_bf16(True) is True
    assert capsys.readouterr().out == ""


def test_auto_loads_the_resolved_dtype(monkeypatch, tiny_model_dir):
    _cpu(monkeypatch, bf16=False)
    assert M.load_model(str(tiny_model_dir), dtype="auto").dtype == torch.float32
    _cpu(monkeypatch, bf16=True)
    assert M.load_model(str(tiny_model_dir), dtype="auto").dtype == torch.bfloat16
