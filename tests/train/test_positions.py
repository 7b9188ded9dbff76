"""Position scaling: factor from the native length, config round-trip, interpolated rotary embedding, length checks."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from longrecall.errors import UserError
from longrecall.models import tiny_model
from longrecall.train.positions import apply_position_scaling, check_sequence_length, native_length, scaling_factor

VOCAB = 64


def _rotary(model, positions):
    x = torch.zeros(1, len(positions), model.config.hidden_size)
    return model.get_decoder().rotary_emb(x, torch.tensor([positions]))


@pytest.mark.parametrize("method", ["linear", "yarn"])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_config_round_trips_with_the_scaling(tmp_path, method, arch):
    model = apply_position_scaling(tiny_model(VOCAB, arch=arch), 20000, method=method)  # native 8192 -> factor 3
    assert scaling_factor(model.config) == 3 and model.config.max_position_embeddings == 3 * 8192
    assert model.config.rope_parameters["rope_type"] == method
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert again.config.rope_parameters == model.config.rope_parameters
    assert (scaling_factor(again.config), native_length(again.config)) == (3, 8192)
    positions = [0, 5, 9000, 20000]
    for a, b in zip(_rotary(model, positions), _rotary(again, positions)):
        torch.testing.assert_close(a, b)


def test_linear_scaled_rotary_at_p_times_factor_equals_unscaled_at_p():
    plain = tiny_model(VOCAB)
    scaled = apply_position_scaling(tiny_model(VOCAB), 4 * 8192)
    p = [0, 1, 7, 100, 2047, 8191]
    for a, b in zip(_rotary(scaled, [4 * i for i in p]), _rotary(plain, p)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(_rotary(scaled, p)[0], _rotary(plain, p)[0])


def test_yarn_changes_the_model_and_keeps_short_frequencies():
    plain, scaled = tiny_model(VOCAB), apply_position_scaling(tiny_model(VOCAB), 4 * 8192, method="yarn")
    rope_plain, rope_yarn = plain.get_decoder().rotary_emb, scaled.get_decoder().rotary_emb
    # YaRN keeps the fast dimensions, slows the slow ones (at most by the factor) and sharpens attention.
    assert torch.equal(rope_yarn.inv_freq[0], rope_plain.inv_freq[0])
    assert rope_plain.inv_freq[-1] / 4 <= rope_yarn.inv_freq[-1] < rope_plain.inv_freq[-1]
    assert rope_yarn.attention_scaling == pytest.approx(0.1 * math.log(4) + 1)


def test_factor_one_changes_nothing_and_scaling_never_shrinks():
    config = AutoConfig.for_model("llama", max_position_embeddings=8192)
    before = config.to_dict()
    assert apply_position_scaling(config, 8192).to_dict() == before
    apply_position_scaling(config, 30000)  # factor 4
    apply_position_scaling(config, 9000)  # factor 2 < 4: the trained scaling stays
    assert scaling_factor(config) == 4 and native_length(config) == 8192
    apply_position_scaling(config, 60000)  # factor 8, still from the native 8192
    assert scaling_factor(config) == 8 and config.max_position_embeddings == 65536


def test_too_long_sequences_and_bad_requests_are_refused():
    config = AutoConfig.for_model("llama", max_position_embeddings=8192)
    check_sequence_length(config, 8192)
    with pytest.raises(UserError, match="raise the target length"):
        check_sequence_length(config, 8193)
    apply_position_scaling(config, 16384)
    check_sequence_length(config, 16384)
    with pytest.raises(UserError, match="target_length >= 16385"):
        check_sequence_length(config, 16385)
    with pytest.raises(UserError, match="unknown position scaling"):
        apply_position_scaling(config, 40000, method="ntk")
    with pytest.raises(UserError, match="already scaled with 'linear'"):
        apply_position_scaling(config, 40000, method="yarn")


# ---------------------------------------------------------------- restoring an adapter's scaling on load

def _recorded(model):
    from longrecall.train.lora_plus import position_info

    return position_info(model.config)


def test_restore_gives_an_unscaled_base_the_exact_recorded_yarn_including_beta_and_attention_factor():
    from longrecall.train.positions import restore_position_scaling

    trained = tiny_model(VOCAB)
    apply_position_scaling(trained, 16384, method="yarn")
    trained.config.rope_parameters.update(beta_fast=16.0, beta_slow=2.0, attention_factor=1.2)
    trained.config.validate_rope()
    trained = AutoModelForCausalLM.from_config(trained.config)  # rotary built from the custom parameters
    recorded = _recorded(trained)

    base = tiny_model(VOCAB)
    restore_position_scaling(base, recorded)
    params = base.config.rope_parameters
    assert (params["beta_fast"], params["beta_slow"], params["attention_factor"]) == (16.0, 2.0, 1.2)
    assert params == trained.config.rope_parameters and base.config.max_position_embeddings == 16384
    positions = [0, 5, 9000, 16000]
    for a, b in zip(_rotary(base, positions), _rotary(trained, positions)):
        torch.testing.assert_close(a, b)
    assert base.get_decoder().rotary_emb.attention_scaling == pytest.approx(1.2)
    restore_position_scaling(base, recorded)  # already the same scaling: accepted as is


def test_extending_a_yarn_model_keeps_its_beta_and_attention_factor():
    config = AutoConfig.for_model("llama", max_position_embeddings=8192)
    apply_position_scaling(config, 16384, method="yarn")
    config.rope_parameters.update(beta_fast=16.0, beta_slow=2.0, attention_factor=1.2)
    apply_position_scaling(config, 32768, method="yarn")
    p = config.rope_parameters
    assert p["factor"] == 4.0 and (p["beta_fast"], p["beta_slow"], p["attention_factor"]) == (16.0, 2.0, 1.2)


def test_an_unscaled_adapter_on_a_scaled_base_is_refused():
    from longrecall.train.positions import restore_position_scaling

    recorded = _recorded(tiny_model(VOCAB))  # trained at the native 8k
    base = apply_position_scaling(tiny_model(VOCAB), 16384, method="yarn")
    with pytest.raises(UserError, match="trained without position scaling.*unscaled base model") as err:
        restore_position_scaling(base, recorded)
    assert "\n" not in str(err.value)
    restore_position_scaling(tiny_model(VOCAB), recorded)  # on the unscaled base it was trained from: fine


@pytest.mark.parametrize("change", [{"beta_fast": 64.0}, {"attention_factor": 1.5}, {"factor": 4.0, "_target": 32768},
                                    {"_method": "linear"}])
def test_scalings_that_differ_are_refused(change):
    from longrecall.train.positions import restore_position_scaling

    recorded = _recorded(apply_position_scaling(tiny_model(VOCAB), 16384, method="yarn"))
    base = apply_position_scaling(tiny_model(VOCAB), change.pop("_target", 16384), method=change.pop("_method", "yarn"))
    base.config.rope_parameters.update(change)
    with pytest.raises(UserError, match="position scaling differs"):
        restore_position_scaling(base, recorded)


def test_another_base_is_refused():
    from longrecall.train.positions import restore_position_scaling

    recorded = _recorded(apply_position_scaling(tiny_model(VOCAB), 16384, method="yarn"))
    other = tiny_model(VOCAB)
    other.config.max_position_embeddings = 4096  # another native context
    with pytest.raises(UserError, match="base model it was trained from"):
        restore_position_scaling(other, recorded)


def test_load_adapter_refuses_an_unscaled_adapter_on_a_scaled_base(tmp_path):
    from longrecall.train.lora_plus import LoraPlusConfig, apply_lora_plus, load_adapter, save_adapter

    save_adapter(apply_lora_plus(tiny_model(VOCAB), LoraPlusConfig()), tmp_path / "adapter")
    scaled = apply_position_scaling(tiny_model(VOCAB), 16384, method="yarn")
    with pytest.raises(UserError, match="trained without position scaling"):
        load_adapter(scaled, tmp_path / "adapter")
    load_adapter(tiny_model(VOCAB), tmp_path / "adapter")
