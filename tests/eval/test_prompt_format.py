"""One prompt format everywhere: grids, the scorecard and GRPO read the answer_prefix an adapter was trained with
(recorded in longrecall_adapter.json) when their config says null, and keep an explicit value."""
import json
import logging

import pytest

from longrecall.eval.grid import GridConfig, resolve_prompt_format
from longrecall.eval.scorecard import _prompt_format
from longrecall.rl.grpo import GrpoConfig
from longrecall.rl.grpo import resolve_prompt_format as grpo_format


def _adapter(tmp_path, name, record):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    if record is not None:
        (folder / "longrecall_adapter.json").write_text(json.dumps({"base_model": "default", "answer_prefix": record}))
    return str(folder)


@pytest.mark.parametrize("record,expected", [(True, True), (False, False), (None, False)])
def test_null_means_the_adapters_format_in_grids_scorecard_and_grpo(tmp_path, record, expected):
    adapter = _adapter(tmp_path, "a", record)
    assert resolve_prompt_format(GridConfig(adapter=adapter, answer_prefix=None)).answer_prefix is expected
    assert _prompt_format(adapter) is expected
    assert grpo_format(GrpoConfig(adapter=adapter, answer_prefix=None)).answer_prefix is expected


def test_no_adapter_means_the_data_commands_format():
    assert resolve_prompt_format(GridConfig(answer_prefix=None)).answer_prefix is False
    assert _prompt_format(None) is False
    assert grpo_format(GrpoConfig(answer_prefix=None)).answer_prefix is False


def test_an_explicit_value_that_differs_is_kept_with_a_warning(tmp_path, caplog, capsys):
    adapter = _adapter(tmp_path, "a", True)
    with caplog.at_level(logging.WARNING):
        assert resolve_prompt_format(GridConfig(adapter=adapter, answer_prefix=False)).answer_prefix is False
    assert "trained with True" in caplog.text
    assert grpo_format(GrpoConfig(adapter=adapter, answer_prefix=False)).answer_prefix is False
    assert "differs" in capsys.readouterr().out
