"""The NIAH grid: every (family, length, depth, seed) cell asked of a backend, scored, appended to results.jsonl, then plotted.

    longrecall eval niah --model default --lengths 1024,2048,4096 --depths 0,0.25,0.5,0.75,1 \
        --tasks single,all_needles,chain --samples 2 --haystack noise --output-dir runs/niah

Each finished cell is appended (fsync) to OUTPUT_DIR/results.jsonl, so a crash loses nothing finished and a rerun
skips the done cells. Lengths beyond the model's positions are marked (`beyond_positions`), not asked.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import load_config
from ..errors import UserError
from ..io import append_jsonl, write_json, write_jsonl
from .report import RULER_THRESHOLD, effective_length, write_run_report

log = logging.getLogger(__name__)
__all__ = ["GridConfig", "effective_length", "plan_cells", "run_grid", "add_arguments", "main"]


@dataclass
class GridConfig:
    """`longrecall eval niah` settings; each field is a flag (dashes for underscores) and a YAML key."""

    model: str = "default"  # HF id, local folder, 'default'; for --backend openai the served model name
    adapter: str | None = None  # peft adapter folder from `longrecall train` (hf backend)
    backend: str = "hf"  # hf | openai | rag (retrieval + the hf reader; with --adapter: the hybrid)
    base_url: str | None = None  # OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1
    tokenizer: str | None = None  # tokenizer that sizes prompts (default: the model's, or 'default' for openai)
    lengths: list[int] = field(default_factory=lambda: [1024, 2048, 4096])
    depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    tasks: list[str] = field(default_factory=lambda: ["single", "all_needles", "chain"])
    samples: int = 2  # seeds per cell
    seed: int = 0  # first seed; cells use seed .. seed + samples - 1
    haystack: str = "noise"  # noise | prose | needles | user
    corpus: str | None = None  # file or folder for --haystack user
    needle_kind: str = "number"  # number | word | uuid
    phrasing: str = "heldout"  # heldout: templates never used in training data; train | any
    answer_prefix: bool | None = None  # RULER-style answer opening the model continues; None: the adapter's recorded format (false without)
    max_new_tokens: int | None = None  # None: each sample's answer budget
    dtype: str = "auto"  # hf backend: auto (bfloat16 where native, else float32) | bfloat16 | autocast | float32
    batch_size: int = 1  # hf backend batch
    concurrency: int = 4  # openai backend parallel requests
    threshold: float = RULER_THRESHOLD  # effective-length threshold, percent
    output_dir: str = "runs/niah"
    rag_method: str = "auto"  # --backend rag: topk | multihop | findall | auto
    rag_budget: int = 1024  # --backend rag: tokens of retrieved text given to the reader
    rag_retriever: str = "bm25"  # --backend rag: bm25 | dense | hybrid (packaged MiniLM)
    hops: int | None = None  # chain / vartrack hops (None: random 1-4 per sample)
    n_needles: int | None = None  # all_needles / multivalue / multiquery count (None: the family's random default)


# Fields that define what a results.jsonl measures: resuming with different values would mix two experiments.
_IDENTITY = ("model", "adapter", "backend", "tokenizer", "haystack", "corpus", "needle_kind", "phrasing", "answer_prefix",
             "max_new_tokens", "hops", "n_needles", "rag_method", "rag_budget", "rag_retriever")


def cell_key(row: dict) -> tuple:
    return (row["task"], int(row["length"]), round(float(row["depth"]), 6), int(row["seed"]))


def plan_cells(cfg: GridConfig) -> list[tuple[str, int, float, int]]:
    """Every cell, shortest length first so early results cover the whole grid's families."""
    seeds = range(cfg.seed, cfg.seed + cfg.samples)
    return [(t, int(L), round(float(d), 6), s) for L in sorted(cfg.lengths) for t in cfg.tasks for d in cfg.depths for s in seeds]


def _spec(cfg: GridConfig, task: str, length: int, depth: float, seed: int):
    from ..niah import GenSpec

    return GenSpec(task=task, length=length, depth=depth, haystack=cfg.haystack, needle_kind=cfg.needle_kind, seed=seed,
                   corpus=cfg.corpus, phrasing=cfg.phrasing, answer_prefix=cfg.answer_prefix, hops=cfg.hops,
                   n_needles=cfg.n_needles)


def read_done(path: Path) -> list[dict]:
    """Rows already in results.jsonl; a torn last line (crash mid-append) is dropped and the file repaired."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise UserError(f"{path}:{i + 1} is not valid JSON: delete that line or the file and rerun") from None
            log.warning("dropping a torn last line of %s (interrupted write)", path)
            write_jsonl(path, rows)
    return rows


def _check_identity(out: Path, cfg: GridConfig) -> None:
    ident = {k: getattr(cfg, k) for k in _IDENTITY}
    run_file = out / "run.json"
    if run_file.exists() and (out / "results.jsonl").exists():
        old = json.loads(run_file.read_text()).get("identity", {})
        diff = [k for k in _IDENTITY if k in old and old[k] != ident[k]]
        if diff:
            raise UserError(f"{out} holds results for a different run ({', '.join(f'{k}={old[k]!r}' for k in diff)}): "
                            f"pass another --output-dir or delete {out / 'results.jsonl'}")
    write_json(run_file, {"identity": ident, "config": dataclasses.asdict(cfg)})


def resolve_prompt_format(cfg: GridConfig) -> GridConfig:
    """answer_prefix None -> the format the adapter was trained with (longrecall_adapter.json), else false (the data
    commands' format); an explicit value that differs from the adapter's is kept, with a warning."""
    recorded = None
    if cfg.adapter:
        from ..train.lora_plus import recorded_answer_prefix

        recorded = recorded_answer_prefix(cfg.adapter)
    if cfg.answer_prefix is None:
        return dataclasses.replace(cfg, answer_prefix=bool(recorded))
    if recorded is not None and recorded != cfg.answer_prefix:
        log.warning("asking with answer_prefix=%s, but %s was trained with %s", cfg.answer_prefix, cfg.adapter, recorded)
    return cfg


def make_grid_backend(cfg: GridConfig):
    from .backends import make_backend

    if cfg.backend == "hf":
        return make_backend("hf", model=cfg.model, adapter=cfg.adapter, dtype=cfg.dtype, batch_size=cfg.batch_size)
    if cfg.backend == "openai":
        if not cfg.base_url:
            raise UserError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1 from `longrecall serve`)")
        from ..env.server import get_json

        try:  # an endpoint that is not there: one line now, not a run.json and a failure on the first cell
            get_json(cfg.base_url.rstrip("/") + "/models", timeout=5.0)
        except (OSError, ValueError) as e:
            raise UserError(f"no OpenAI-compatible server answers at {cfg.base_url} ({getattr(e, 'reason', None) or e}): "
                            "start one with `longrecall serve --port 8000 &` or fix --base-url") from None
        return make_backend("openai", base_url=cfg.base_url, model=cfg.model, concurrency=cfg.concurrency)
    if cfg.backend == "rag":
        from .rag_backend import make_rag_backend

        return make_rag_backend(cfg)
    return make_backend(cfg.backend, model=cfg.model)


def run_grid(cfg: GridConfig, backend=None, tokenizer=None, progress: bool = True) -> list[dict]:
    """Ask every pending cell, append its row, then write the report; returns all rows (old and new)."""
    from tqdm.auto import tqdm

    from ..models import load_tokenizer
    from ..niah import generate_sample, score, score_details

    if not (cfg.lengths and cfg.depths and cfg.tasks and cfg.samples >= 1):
        raise UserError("the grid is empty: give --lengths, --depths, --tasks and --samples >= 1")
    cfg = resolve_prompt_format(cfg)
    for task in cfg.tasks:  # fail on a typo before loading a model
        _spec(cfg, task, max(cfg.lengths), 0.5, cfg.seed).validate()
    out = Path(cfg.output_dir)
    results = out / "results.jsonl"
    rows = read_done(results) if results.exists() else []
    done = {cell_key(r) for r in rows}
    pending = [c for c in plan_cells(cfg) if c not in done]
    if pending:
        # The model loads before anything is written: a bad --model or --adapter leaves no folder behind.
        backend = backend if backend is not None else make_grid_backend(cfg)
    out.mkdir(parents=True, exist_ok=True)
    _check_identity(out, cfg)
    if pending:
        tok = tokenizer if tokenizer is not None else load_tokenizer(cfg.tokenizer or (cfg.model if cfg.backend == "hf" else "default"))
        limit = getattr(backend, "max_positions", None)
        for L in sorted({c[1] for c in pending if limit and c[1] > limit}):
            log.warning("length %d is beyond %s's %d positions: its cells are marked, not asked", L, backend.name, limit)
        step = max(getattr(backend, "batch_size", 1), getattr(backend, "concurrency", 1))
        bar = tqdm(total=len(pending), desc=f"niah {getattr(backend, 'name', '')}", disable=not progress, unit="cell")
        try:
            for start in range(0, len(pending), step):
                chunk = pending[start:start + step]
                beyond = [c for c in chunk if limit and c[1] > limit]
                for task, length, depth, seed in beyond:
                    row = {"task": task, "length": length, "depth": depth, "seed": seed, "haystack": cfg.haystack,
                           "score": None, "answer": None, "beyond_positions": True, "backend": backend.name}
                    append_jsonl(results, row)
                    rows.append(row)
                asked = [c for c in chunk if c not in beyond]
                if asked:
                    rows += _ask(cfg, backend, tok, asked, results, generate_sample, score, score_details)
                bar.update(len(chunk))
        finally:
            bar.close()
    write_run_report(out, rows, title=_title(cfg), threshold=cfg.threshold)
    return rows


def _ask(cfg, backend, tok, cells, results, generate_sample, score, score_details) -> list[dict]:
    samples = [generate_sample(_spec(cfg, *c), tok) for c in cells]
    budget = cfg.max_new_tokens or max(s.answer_budget for s in samples)
    t0 = time.perf_counter()
    answers = backend.generate(samples, budget)
    latency = (time.perf_counter() - t0) / len(samples)  # per cell; exact when cells are asked one at a time
    new = []
    for (task, length, depth, seed), s, text in zip(cells, samples, answers):
        row = {
            "task": task, "length": length, "depth": depth, "seed": seed, "id": s.id, "haystack": s.haystack,
            "needle_kind": s.needle_kind, "prompt_tokens": s.prompt_tokens, "answers": s.answers, "answer": text,
            "needles": [{"token_offset": n["token_offset"], "depth": n["depth"], "role": n["role"]} for n in s.needles],
            "score": float(score(s, text)), "details": score_details(s, text), "latency_s": round(latency, 4),
            "beyond_positions": False, "backend": backend.name,
        }
        append_jsonl(results, row)
        new.append(row)
    return new


def _title(cfg: GridConfig) -> str:
    return f"NIAH {cfg.model}" + (f" + {Path(cfg.adapter).name}" if cfg.adapter else "") + f" ({cfg.backend}, {cfg.haystack})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per GridConfig field; flags not given fall back to --config YAML, then the dataclass default."""
    parser.add_argument("--config", default=argparse.SUPPRESS, help="YAML file of GridConfig keys (flags override it)")
    for f in dataclasses.fields(GridConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(str(v) for v in default) if isinstance(default, list) else default
        if f.type in (bool, "bool", "bool | None"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=f"(default {shown})")
        else:
            parser.add_argument(flag, default=argparse.SUPPRESS, help=f"(default {shown})")


BACKEND_NAMES = ("hf", "openai", "rag")


def check_config(cfg: GridConfig) -> GridConfig:
    """Values that would run but measure nothing, refused before a model loads or a file is written."""
    if cfg.backend not in BACKEND_NAMES:
        raise UserError(f"unknown backend '{cfg.backend}': use one of {', '.join(BACKEND_NAMES)}")
    for key, low in (("batch_size", 1), ("concurrency", 1), ("samples", 1), ("rag_budget", 1), ("max_new_tokens", 1)):
        value = getattr(cfg, key)
        if value is not None and value < low:
            raise UserError(f"--{key.replace('_', '-')} {value}: must be {low} or more")
    if cfg.adapter:
        from ..train.lora_plus import read_adapter_info

        read_adapter_info(cfg.adapter)  # a missing or broken adapter is one line before the model loads
    return cfg


def config_from_args(args: argparse.Namespace) -> GridConfig:
    names = {f.name for f in dataclasses.fields(GridConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return check_config(load_config(GridConfig, getattr(args, "config", None), overrides))


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    rows = run_grid(cfg)
    L = effective_length(rows, cfg.threshold)
    print(f"effective length (> {cfg.threshold:g}%): {L} tokens; report: {Path(cfg.output_dir) / 'report.md'}")
    return 0
