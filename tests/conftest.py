"""Shared fixtures: the real embedded tokenizer, tiny random models saved as folders, offline hub."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def token_cache(tmp_path_factory):
    """Haystack token starts are cached in a folder of this run (niah.tokens.cached_starts), not the user's cache."""
    os.environ["LONGRECALL_TOKEN_CACHE"] = str(tmp_path_factory.mktemp("token-cache"))
    return os.environ["LONGRECALL_TOKEN_CACHE"]


@pytest.fixture(scope="session")
def tok():
    from longrecall.models import load_tokenizer

    return load_tokenizer("default")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tok):
    """A 2-layer, hidden-32 GQA Llama with the real tokenizer, saved as a model folder."""
    from longrecall.models import tiny_model

    path = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_model(len(tok))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
