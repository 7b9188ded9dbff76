"""Every shipped env preset (configs/env-*.yaml) builds the env config and the server config it names."""
from pathlib import Path

import pytest
import yaml

PRESETS = sorted((Path(__file__).parents[2] / "configs").glob("env-*.yaml"))


def test_there_are_presets():
    assert {p.name for p in PRESETS} >= {"env-niah.yaml", "env-smoke.yaml"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_builds(path):
    from atroposlib.envs.base import APIServerConfig

    from longrecall.env.niah_env import NiahEnv, NiahEnvConfig

    data = yaml.safe_load(path.read_text())
    assert set(data) <= {"env", "openai"}
    env_default, (server_default,) = NiahEnv.config_init()
    env = NiahEnvConfig(**{**env_default.model_dump(), **data["env"]})  # the library merges the same way
    server = APIServerConfig(**{**server_default.model_dump(), **data.get("openai", {})})
    assert env.tasks and env.lengths and env.group_size >= 2 and env.use_wandb is False
    assert server.base_url.startswith("http://127.0.0.1") and server.health_check is False
