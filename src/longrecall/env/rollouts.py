"""SFT and DPO datasets made by Atropos rollouts: run-api, then atropos-sft-gen / atropos-dpo-gen, then the env's
`serve` against an OpenAI-compatible endpoint, every step bounded in time; the raw output becomes TRL-style records.

    longrecall data sft --via atropos sft.jsonl --groups 4 --group-size 2 --env lengths=512
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

from ..errors import UserError
from ..io import read_jsonl, write_jsonl
from ..models import cache_dir, resolve
from .server import free_port, get_json, list_models, log_tail, start_server

DPO_GROUPS_PER_BATCH = 8  # atropos-dpo-gen registers batch_size = 8 groups: fewer never make a batch


# ---- conversions (pure) -------------------------------------------------------------------------------------

def _dedup(records: Iterable[dict]) -> list[dict]:
    seen, out = set(), []
    for r in records:
        key = json.dumps(r, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def sft_records(raw: Iterable[dict], min_score: float) -> list[dict]:
    """atropos-sft-gen rows {messages, score} -> {"messages": chat} for rollouts scoring at least min_score."""
    return _dedup({"messages": r["messages"]} for r in raw if r.get("score", 0.0) >= min_score and r.get("messages"))


def dpo_records(raw: Iterable[dict]) -> list[dict]:
    """atropos-dpo-gen rows {pos, neg, score} (chats) -> {"prompt": messages, "chosen": str, "rejected": str}."""
    out = []
    for r in raw:
        pos, neg = r.get("pos"), r.get("neg")
        if not pos or not neg or pos[:-1] != neg[:-1] or pos[-1]["content"] == neg[-1]["content"]:
            continue  # not a pair on one prompt, or no preference to learn
        out.append({"prompt": pos[:-1], "chosen": pos[-1]["content"], "rejected": neg[-1]["content"]})
    return _dedup(out)


def process_to_sft(process_jsonl: str | os.PathLike, min_score: float = 1.0) -> list[dict]:
    """Rollouts of a `niah_env process` JSONL (one group a line) -> SFT chat records scoring at least min_score."""
    rows = []
    for group in read_jsonl(process_jsonl):
        if "messages" not in group or "scores" not in group:
            raise UserError(f"{process_jsonl} is not an Atropos `process` output (no messages/scores): pass what `process` wrote")
        rows += [{"messages": m, "score": s} for m, s in zip(group["messages"], group["scores"])]
    return sft_records(rows, min_score)


# ---- orchestration ------------------------------------------------------------------------------------------

def env_flags(env: dict | None) -> list[str]:
    """{"lengths": [512, 1024], "tasks": "single"} -> ["--env.lengths", "512,1024", "--env.tasks", "single"]."""
    flags = []
    for k, v in (env or {}).items():
        v = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v).lower() if isinstance(v, bool) else str(v)
        flags += [f"--env.{k}", v]
    return flags


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_UPDATE_CHECK="1", WANDB_MODE="disabled")
    env.setdefault("OMP_NUM_THREADS", "1")
    with open(log, "w", encoding="utf-8") as fh:  # the child keeps its own handle
        # SIGINT back to default in the child: we stop the generators with it, and a parent started in the
        # background (nohup, `&` in a script) would otherwise hand down "ignore SIGINT".
        return subprocess.Popen([sys.executable, *args], stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _why(log: Path) -> str:
    """The line that says why a child stopped: our env's own message if there is one (asyncio noise follows it)."""
    lines = [ln.strip() for ln in log_tail(log, 400).split(" | ") if ln.strip()]
    ours = [ln for ln in lines if ln.startswith(("niah_env", "error:"))]
    return (ours or lines or [""])[-1][:300]


def _check(procs: dict[str, tuple[subprocess.Popen, Path]], deadline: float, what: str, timeout: float) -> None:
    for name, (p, log) in procs.items():
        if p.poll() is not None:
            raise UserError(f"{name} stopped (code {p.returncode}): {_why(log)} (log: {log})")
    if time.monotonic() > deadline:
        raise UserError(f"{what} did not happen within {timeout:.0f}s (logs: {Path(next(iter(procs.values()))[1]).parent}): "
                        "raise --timeout, or use fewer groups or shorter lengths")


def _api(url: str, path: str) -> dict:
    try:
        return get_json(url + path, 2.0)
    except (OSError, ValueError):
        return {}


def _batch_polls(api_log: Path) -> int:
    try:
        return api_log.read_text(errors="replace").count("GET /batch")
    except OSError:
        return 0


def _wait_for_next_poll(api_log: Path, gen_proc: subprocess.Popen, deadline: float, grace: float = 60.0) -> None:
    """Wait until the generator asks the API for another batch: it writes a batch's rows before it polls again.

    A fixed sleep lost the last batch on a loaded machine (CI), leaving an empty file."""
    seen, stop = _batch_polls(api_log), min(deadline, time.monotonic() + grace)
    while gen_proc.poll() is None and time.monotonic() < stop:
        time.sleep(1.0)
        if _batch_polls(api_log) >= seen + 2:  # the poll that took the batch may be logged after the step moved
            return


def run_rollouts(kind: str, raw: Path, logs: Path, *, base_url: str, model_name: str, tokenizer: str, groups: int,
                 group_size: int, env: dict | None, gen_flags: list[str], api_port: int | None, timeout: float) -> None:
    """Run the API, the `atropos-{kind}-gen` trainer stand-in and the env's `serve` until `groups` groups are taken."""
    deadline = time.monotonic() + timeout
    port = api_port or free_port()
    api_url = f"http://127.0.0.1:{port}"
    max_len = 1 << 20  # the env silently drops groups longer than the trainer's max: never, for data
    batches = math.ceil(groups / DPO_GROUPS_PER_BATCH) if kind == "dpo" else groups
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        api = ["-m", "atroposlib.cli.run_api", "--host", "127.0.0.1", "--port", str(port)]
        procs["run-api"] = (_spawn(api, logs / "api.log"), logs / "api.log")
        while not _api(api_url, "/"):
            _check(procs, deadline, "the Atropos API start", timeout)
            time.sleep(0.5)
        gen = ["-m", f"atroposlib.cli.{kind}", str(raw), "--api-url", api_url, "--save-messages", "--tokenizer", tokenizer,
               "--group-size", str(group_size), "--max-token-len", str(max_len), *gen_flags]
        procs[f"atropos-{kind}-gen"] = (_spawn(gen, logs / f"{kind}-gen.log"), logs / f"{kind}-gen.log")
        # The generator resets the API when it registers: the env must come after.
        while _api(api_url, "/info").get("batch_size", -1) == -1:
            _check(procs, deadline, f"atropos-{kind}-gen registration", timeout)
            time.sleep(0.5)
        serve = ["-m", "longrecall.env.niah_env", "serve", "--env.rollout_server_url", api_url,
                 "--env.group_size", str(group_size), "--env.total_steps", str(batches + 1), "--env.tokenizer_name", tokenizer,
                 "--env.use_wandb", "false", *env_flags(env), "--openai.base_url", base_url, "--openai.model_name", model_name]
        procs["the environment"] = (_spawn(serve, logs / "env.log"), logs / "env.log")
        gen_proc, stopped = procs[f"atropos-{kind}-gen"][0], False
        while gen_proc.poll() is None:
            if _api(api_url, "/status").get("current_step", 0) >= batches:
                _wait_for_next_poll(logs / "api.log", gen_proc, deadline)  # the last batch is written by then
                _stop(gen_proc, signal.SIGINT)  # SIGINT unwinds asyncio and closes (flushes) its output file
                stopped = True
                break
            _check(procs, deadline, f"{groups} groups of rollouts", timeout)
            time.sleep(1.0)
        if (gen_proc.returncode != 0 and not stopped) or not raw.exists():
            raise UserError(f"atropos-{kind}-gen failed (code {gen_proc.returncode}): {_why(logs / f'{kind}-gen.log')}")
    finally:
        for p, _ in reversed(list(procs.values())):
            _stop(p)


def _endpoint(base_url: str | None, model: str, model_name: str | None):
    """(base_url, model_name, server handle or None): check a given endpoint, or start the local one."""
    if base_url is None:
        handle = start_server(model)
        return handle.base_url, handle.model_name, handle
    served = list_models(base_url)
    if model_name is None:
        if not served:
            raise UserError(f"{base_url} serves no model: load one, or pass --model-name")
        model_name = served[0]
    elif served and model_name not in served:
        raise UserError(f"{base_url} serves {served[0]!r}, not {model_name!r}: pass --model-name {served[0]}")
    return base_url, model_name, None


def _rollout(kind: str, out, min_value: float, *, base_url, model, model_name, tokenizer, groups, group_size, env,
             api_port, timeout, log_dir) -> int:
    if groups < 1 or group_size < 2:
        raise UserError("rollouts need --groups >= 1 and --group-size >= 2 (a group is compared within itself)")
    owned = {"group_size", "total_steps", "rollout_server_url", "tokenizer_name", "use_wandb"} & set(env or {})
    if owned:
        raise UserError(f"--env {', '.join(sorted(owned))} is set by the rollout: use --group-size/--groups/--tokenizer instead")
    logs = Path(log_dir) if log_dir else cache_dir() / "logs" / f"rollout-{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    raw = logs / f"{kind}-raw.jsonl"
    raw.unlink(missing_ok=True)
    tok = resolve(tokenizer)
    url, name, handle = _endpoint(base_url, model, model_name)
    try:
        if kind == "sft":  # keep every rollout; the score threshold is applied below
            flags = ["--allow-negative-scores", "--save-top-n-per-group", str(group_size), "--tasks-per-step", "1",
                     "--num-seqs-to-save", str(groups * group_size)]
        else:
            flags = ["--save-n-pairs-per-group", str(group_size // 2), "--minimum-score-diff-max-min", str(min_value),
                     "--num-seqs-to-save", str(10**9)]
        run_rollouts(kind, raw, logs, base_url=url, model_name=name, tokenizer=tok, groups=groups, group_size=group_size,
                     env=env, gen_flags=flags, api_port=api_port, timeout=timeout)
    finally:
        if handle is not None:
            handle.stop()
    rows = read_jsonl(raw) if raw.stat().st_size else []
    records = sft_records(rows, min_value) if kind == "sft" else dpo_records(rows)
    if not records:
        what = f"scored at least {min_value}" if kind == "sft" else f"differed by more than {min_value}"
        raise UserError(f"no rollout {what} in {len(rows)} saved rows: lower the threshold, raise --groups, or use easier tasks")
    return write_jsonl(out, records)


def rollout_sft(out, *, base_url: str | None = None, model: str = "default", model_name: str | None = None,
                tokenizer: str = "default", groups: int = 8, group_size: int = 4, min_score: float = 1.0,
                env: dict | None = None, api_port: int | None = None, timeout: float = 1800.0, log_dir=None) -> int:
    """Rejection sampling: `groups` groups of `group_size` rollouts; keep those scoring >= min_score. Returns rows written."""
    return _rollout("sft", out, min_score, base_url=base_url, model=model, model_name=model_name, tokenizer=tokenizer,
                    groups=groups, group_size=group_size, env=env, api_port=api_port, timeout=timeout, log_dir=log_dir)


def rollout_dpo(out, *, base_url: str | None = None, model: str = "default", model_name: str | None = None,
                tokenizer: str = "default", groups: int = 8, group_size: int = 4, min_margin: float = 0.5,
                env: dict | None = None, api_port: int | None = None, timeout: float = 1800.0, log_dir=None) -> int:
    """Preference pairs from groups (rounded up to 8, atropos-dpo-gen's batch): best vs worse by > min_margin."""
    return _rollout("dpo", out, min_margin, base_url=base_url, model=model, model_name=model_name, tokenizer=tokenizer,
                    groups=groups, group_size=group_size, env=env, api_port=api_port, timeout=timeout, log_dir=log_dir)


# ---- CLI ----------------------------------------------------------------------------------------------------

def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output JSONL")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: serve --model locally)")
    parser.add_argument("--model", default="default", help="model to serve when no --base-url is given")
    parser.add_argument("--model-name", default=None, help="model name at --base-url (default: the first it lists)")
    parser.add_argument("--tokenizer", default="default", help="tokenizer folder for the env and the generator")
    parser.add_argument("--groups", type=int, default=8, help="groups of rollouts (one prompt each)")
    parser.add_argument("--group-size", type=int, default=4, help="rollouts per group")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment setting, repeatable: --env lengths=512,1024 --env tasks=single,multikey")
    parser.add_argument("--api-port", type=int, default=None, help="port for the Atropos API (default: a free one)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before giving up")


def _env_dict(items: list[str]) -> dict:
    from ..config import parse_key_values

    return parse_key_values(items, "--env", typed=False)


def add_sft_arguments(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument("--min-score", type=float, default=1.0, help="keep rollouts whose reward is at least this")


def add_dpo_arguments(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument("--min-margin", type=float, default=0.5, help="chosen must beat rejected by more than this")


def _common(args) -> dict:
    return dict(base_url=args.base_url, model=args.model, model_name=args.model_name, tokenizer=args.tokenizer,
                groups=args.groups, group_size=args.group_size, env=_env_dict(args.env), api_port=args.api_port,
                timeout=args.timeout)


def sft_main(args: argparse.Namespace) -> int:
    n = rollout_sft(args.out, min_score=args.min_score, **_common(args))
    print(f"wrote {n} SFT records to {args.out}")
    return 0


def dpo_main(args: argparse.Namespace) -> int:
    n = rollout_dpo(args.out, min_margin=args.min_margin, **_common(args))
    print(f"wrote {n} DPO pairs to {args.out}")
    return 0
