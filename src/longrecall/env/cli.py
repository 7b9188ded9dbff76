"""`longrecall env serve|process|evaluate [--serve MODEL] [--env.… --openai.…]`: the Atropos environment's CLI.

    longrecall serve --port 8000 &
    longrecall env process --config configs/env-smoke.yaml
    longrecall env evaluate --serve runs/demo/merged --config configs/env-demo.yaml   # starts and stops the server

With --serve, a local `transformers serve` is started for MODEL (a folder or 'default') on a free port, the
environment is pointed at it, and the server is stopped when the environment ends.
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["serve", "process", "evaluate"], help="Atropos' subcommands (see `longrecall env ACTION --help`)")
    p.add_argument("rest", nargs=argparse.REMAINDER,
                   help="--serve MODEL to start a local server for the run; then Atropos' flags: --config FILE, --env.FIELD VALUE, --openai.FIELD VALUE")


def _pop_serve(rest: list[str]) -> tuple[str | None, list[str]]:
    if "--serve" not in rest:
        return None, rest
    i = rest.index("--serve")
    if i + 1 >= len(rest):
        from ..errors import UserError

        raise UserError("--serve needs a model: a model folder or 'default'")
    return rest[i + 1], rest[:i] + rest[i + 2:]


def _resolve_config(rest: list[str]) -> list[str]:
    """`--config configs/env-smoke.yaml` names the packaged file from any folder (a user's own file still wins)."""
    from ..config import resolve_config_path

    out = list(rest)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = str(resolve_config_path(out[i + 1]))
        elif arg.startswith("--config="):
            out[i] = "--config=" + str(resolve_config_path(arg.split("=", 1)[1]))
    return out


def _flag(rest: list[str], name: str) -> str | None:
    for i, arg in enumerate(rest):
        if arg == name and i + 1 < len(rest):
            return rest[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _check_endpoint(rest: list[str]) -> None:
    """process/evaluate against a server that is not there: one line before Atropos writes anything
    (it would leave an empty groups file, evaluate_config.yaml and a config dump around the error)."""
    from ..config import load_yaml
    from ..errors import UserError
    from .server import get_json

    url = _flag(rest, "--openai.base_url")
    config = _flag(rest, "--config")
    if url is None and config:
        section = load_yaml(config).get("openai")
        url = section.get("base_url") if isinstance(section, dict) else None
    if not url:
        return
    try:
        get_json(str(url).rstrip("/") + "/models", timeout=5.0)
    except (OSError, ValueError) as e:
        why = getattr(e, "reason", None) or e
        raise UserError(f"no OpenAI-compatible server answers at {url} ({why}): start one with `longrecall serve --port 8000 &`, "
                        "or pass --serve default to start and stop one for this run") from None


def main(a) -> None:
    from .niah_env import NiahEnv

    model, rest = _pop_serve(list(a.rest))
    rest = _resolve_config(rest)
    if model is None and a.action in ("process", "evaluate"):
        _check_endpoint(rest)
    handle = None
    if model:
        from .server import start_server

        handle = start_server(model)
        rest += ["--openai.base_url", handle.base_url, "--openai.model_name", handle.model_name]
        print(f"serving {handle.model_name} at {handle.base_url}", flush=True)
    sys.argv = ["longrecall env", a.action, *rest]
    try:
        NiahEnv.cli()
    except SystemExit as e:  # Atropos exits on its own; a non-zero code is already explained in its output
        if e.code not in (0, None):
            raise
    finally:
        if handle is not None:
            handle.stop()
