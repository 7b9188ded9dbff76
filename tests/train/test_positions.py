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
