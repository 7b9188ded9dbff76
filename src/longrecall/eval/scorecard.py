"""The scorecard: held-out families × lengths, many samples a cell, every score with its 95% interval.

    longrecall eval scorecard --model default [--adapter A] --output-dir runs/scorecard/base
    longrecall eval scorecard --compare runs/scorecard/base runs/scorecard/tuned --output-dir runs/scorecard/compare

A fixed, versioned config (configs/eval/scorecard.yaml) says which rows (a family with its parameters), lengths,
depths, haystacks and how many samples a cell; its version and hash go into every result row. Sample i of a cell takes
depth i mod |depths| and haystack i mod |haystacks|, so every cell spreads evenly over both. Rows are appended
(fsync) to results.jsonl as they are answered: a rerun resumes, and a rerun with a changed config is refused.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import load_config
from ..errors import UserError
from ..io import append_jsonl, atomic_open, write_json
from . import stats

DEFAULT_CONFIG = "configs/eval/scorecard.yaml"
# A row's n_needles is capped at length // this: 12 at 1k, so the needles, their decoys and the answer fit.
MIN_TOKENS_PER_NEEDLE = 80
ALL_ROWS = "every row"  # the comparison's pooled line: each sample's score, whatever its family, equally weighted


@dataclass
class Row:
    """One scorecard row: a family and the generator settings that make it (None: the family's own default)."""

    name: str
    task: str
    needle_kinds: list[str] = field(default_factory=lambda: ["number"])  # cycled over the samples
    hops: list[int] = field(default_factory=list)  # cycled over the samples (empty: family default)
    direction: str = "any"
    haystack: str | None = None  # overrides the config's haystacks (e.g. needles for key-value lines)
    n_needles: list[int] = field(default_factory=list)  # cycled over the samples


@dataclass
class ScorecardConfig:
    version: int = 1
    rows: list[Row] = field(default_factory=list)
    lengths: list[int] = field(default_factory=lambda: [1024, 2048, 4096, 8192, 16384])
    samples: dict = field(default_factory=dict)  # {length: samples per row at that length}
    depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    haystacks: list[str] = field(default_factory=lambda: ["prose", "pkgdocs"])  # pkgdocs: installed packages' docs
    phrasing: str = "heldout"
    seed: int = 1000
    batch_size: int = 4
    dtype: str = "auto"  # bfloat16 where it is native (AVX-512 BF16, AMX, GPUs), else float32; the run records which


def load_scorecard_config(path: str | None = None, overrides: dict | None = None) -> ScorecardConfig:
    """The YAML, then --set overrides. `extends: scorecard.yaml` (next to it) takes that file's keys first, so a
    smaller budget (scorecard-cpu.yaml) keeps the same rows and generator settings."""
    from ..config import load_yaml, resolve_config_path

    path = resolve_config_path(path or DEFAULT_CONFIG)
    data = load_yaml(path)
    if data.get("extends"):
        parent = path.parent / str(data.pop("extends"))
        overrides, path = {**data, **(overrides or {})}, parent
    cfg = load_config(ScorecardConfig, path, overrides)
    cfg.rows = [r if isinstance(r, Row) else Row(**r) for r in cfg.rows]
    if not cfg.rows:
        raise UserError("the scorecard config has no rows: list at least one family under rows:")
    cfg.samples = {int(k): int(v) for k, v in (cfg.samples or {}).items()}
    missing = [L for L in cfg.lengths if cfg.samples.get(L, 0) < 1]
    if missing:
        raise UserError(f"samples: gives no count for length(s) {missing}: add '{missing[0]}: N' under samples:")
    return cfg


def config_hash(cfg: ScorecardConfig) -> str:
    return hashlib.sha1(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]


def _settings(cfg: ScorecardConfig) -> dict:
    """Everything but the rows, as JSON would hold it (the lengths in samples: become strings)."""
    return json.loads(json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k != "rows"}))


# How many samples a length gets and which lengths are asked choose *which* (row, length, index) are asked, never what
# one of them is (its seed is per length and index): a config that only grows them asks only the new samples.
GROWABLE = ("samples", "lengths")


def _hash(blob: dict) -> str:
    return hashlib.sha1(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def row_hash(cfg: ScorecardConfig, row: Row) -> str:
    """What one row's answers depend on: the shared settings but the growable ones, and the row. A row's samples
    never depend on the other rows or on how many are asked, so a config that only adds rows, samples or lengths
    asks only the new ones."""
    settings = {k: v for k, v in _settings(cfg).items() if k not in GROWABLE}
    return _hash({"settings": settings, "row": dataclasses.asdict(row)})


def _saved_row_hashes(out: Path, cfg: ScorecardConfig) -> set[str]:
    """Row hashes of answers saved before the growable settings left the hash (they hashed the saved config's
    samples and lengths too): still valid answers, kept on resume."""
    run_file = out / "run.json"
    if not run_file.exists():
        return set()
    saved = json.loads(run_file.read_text()).get("config", {})
    settings = {k: v for k, v in saved.items() if k != "rows"}
    return {_hash({"settings": settings, "row": dataclasses.asdict(r)}) for r in cfg.rows}


def plan(cfg: ScorecardConfig) -> list[tuple[str, int, int]]:
    """Every (row, length, index) to ask, shortest length first so an early stop still covers every row."""
    return [(r.name, L, i) for L in sorted(cfg.lengths) for r in cfg.rows for i in range(cfg.samples[L])]


def spec_for(cfg: ScorecardConfig, row: Row, length: int, i: int):
    from ..niah import GenSpec

    def cyc(xs, default=None):
        return xs[i % len(xs)] if xs else default

    hay = row.haystack or cyc(cfg.haystacks)
    corpus = None
    if hay == "pkgdocs":
        hay, corpus = "user", "pkgdocs"
    n = cyc(row.n_needles)
    if n is not None:  # what fits: at 1k, 16 needles and their ~18 decoys (~20 tokens each) overflow the prompt
        n = min(n, max(2, length // MIN_TOKENS_PER_NEEDLE))
    return GenSpec(task=row.task, length=length, depth=cyc(cfg.depths), haystack=hay, corpus=corpus,
                   needle_kind=cyc(row.needle_kinds, "number"), phrasing=cfg.phrasing, hops=cyc(row.hops),
                   direction=row.direction, n_needles=n, seed=cfg.seed + 7919 * length + i)


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the config keys whose values differ (rows compared by position)."""
    keys = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{k}.")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(isinstance(x, dict) for x in a + b):
            for i, (x, y) in enumerate(zip(a, b)):
                keys += _changed_keys(x, y, f"{prefix}{k}[{i}].")
        elif a != b:
            keys.append(f"{prefix}{k}")
    return keys


def _check_resume(out: Path, ident: dict, cfg: ScorecardConfig) -> None:
    """A rerun into a folder that holds answers must ask the same thing: refused, naming what changed. Rows may be
    added (only they are asked) or dropped (their answers stay on disk, out of the summary)."""
    run_file = out / "run.json"
    if not (run_file.exists() and (out / "results.jsonl").exists()):
        return
    saved = json.loads(run_file.read_text())
    old_cfg = saved.get("config", {})
    changed = _changed_keys({k: v for k, v in old_cfg.items() if k not in ("rows", *GROWABLE)},
                            {k: v for k, v in _settings(cfg).items() if k not in GROWABLE})
    old_rows = {r["name"]: r for r in old_cfg.get("rows", [])}
    for r in cfg.rows:
        if r.name in old_rows:
            changed += _changed_keys(old_rows[r.name], json.loads(json.dumps(dataclasses.asdict(r))), f"rows[{r.name}].")
    if changed:
        raise UserError(f"{out} holds a scorecard made with another config (changed: {', '.join(changed[:4])}): "
                        "resume with the same config, or pass another --output-dir")
    old = saved.get("identity", {})
    for k in ident:
        if k in old and old[k] != ident[k] and k != "config_hash":
            raise UserError(f"{out} holds a scorecard with {k}={old[k]!r}, not {ident[k]!r}: pass another --output-dir")
    added = [r.name for r in cfg.rows if r.name not in old_rows]
    if added and old_rows:
        print(f"resuming {out}: new rows {', '.join(added)} are asked, the others resume")


def run_scorecard(cfg: ScorecardConfig, out: Path, model: str = "default", adapter: str | None = None,
                  answer_prefix: bool = False, backend=None, tokenizer=None, progress: bool = True,
                  timing: dict | None = None) -> list[dict]:
    """Answer every pending (row, length, index); `timing`, when given, receives where this run's seconds went:
    load (model and tokenizer), samples (making the prompts), answers (the model generating, prefill + decode)."""
    from tqdm.auto import tqdm

    from ..models import load_tokenizer
    from ..niah import generate_sample, score, score_details
    from .grid import read_done

    rows_by_name = {r.name: r for r in cfg.rows}
    for r in cfg.rows:  # a typo fails before a model loads
        spec_for(cfg, r, min(cfg.lengths), 0).validate()
    from ..models import resolve_dtype

    ident = {"version": cfg.version, "config_hash": config_hash(cfg), "model": model, "adapter": adapter,
             "answer_prefix": answer_prefix, "dtype": resolve_dtype(cfg.dtype)}
    results = out / "results.jsonl"
    done_rows = read_done(results) if results.exists() else []
    _check_resume(out, ident, cfg)
    hashes = {r.name: row_hash(cfg, r) for r in cfg.rows}
    legacy = _saved_row_hashes(out, cfg)
    asked = set(plan(cfg))  # rows, samples or lengths dropped since: kept on disk, not summarised
    done_rows = [r for r in done_rows if (hashes.get(r["row"]) == r.get("row_hash") or r.get("row_hash") in legacy)
                 and (r["row"], r["length"], r["index"]) in asked]
    done = {(r["row"], r["length"], r["index"]) for r in done_rows}
    pending = [c for c in plan(cfg) if c not in done]
    clock = {"load": 0.0, "samples": 0.0, "answers": 0.0}
    t0 = time.perf_counter()
    if pending and backend is None:
        from .backends import make_backend

        backend = make_backend("hf", model=model, adapter=adapter, dtype=cfg.dtype, batch_size=cfg.batch_size)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "run.json", {"identity": ident, "config": dataclasses.asdict(cfg)})
    if not pending:
        return done_rows
    tok = tokenizer if tokenizer is not None else load_tokenizer(model)
    clock["load"] = time.perf_counter() - t0
    limit = getattr(backend, "max_positions", None)
    step = max(1, getattr(backend, "batch_size", 1))
    bar = tqdm(total=len(pending), desc="scorecard", unit="sample", disable=not progress)
    new = []
    try:
        for start in range(0, len(pending), step):
            chunk = pending[start:start + step]
            specs = [spec_for(cfg, rows_by_name[n], L, i) for n, L, i in chunk]
            for s in specs:
                s.answer_prefix = answer_prefix
            t0 = time.perf_counter()
            samples = [generate_sample(s, tok) for s in specs]
            asked = [k for k, (_, L, _) in enumerate(chunk) if not (limit and L > limit)]
            t1 = time.perf_counter()
            texts = backend.generate([samples[k] for k in asked], max(samples[k].answer_budget for k in asked)) if asked else []
            t2 = time.perf_counter()
            clock["samples"] += t1 - t0
            clock["answers"] += t2 - t1
            dt = (t2 - t1) / max(1, len(asked))
            answers = dict(zip(asked, texts))
            for k, ((name, L, i), s) in enumerate(zip(chunk, samples)):
                text = answers.get(k)
                row = {"row": name, "task": s.task, "length": L, "index": i, "id": s.id, "depth": s.depth,
                       "haystack": s.haystack, "needle_kind": s.needle_kind, "version": cfg.version,
                       "config_hash": ident["config_hash"], "row_hash": hashes[name], "answers": s.answers, "answer": text,
                       "score": None if text is None else float(score(s, text)),
                       "details": None if text is None else score_details(s, text),
                       "beyond_positions": text is None, "latency_s": round(dt, 3)}
                append_jsonl(results, row)
                new.append(row)
            bar.update(len(chunk))
    finally:
        bar.close()
        if timing is not None:
            timing.update({k: round(v, 1) for k, v in clock.items()})
    return done_rows + new


def cells(rows: list[dict]) -> dict[str, dict[int, list[float]]]:
    """{row name: {length: [scores]}} over the answered samples."""
    out: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        if r.get("score") is not None:
            out.setdefault(r["row"], {}).setdefault(int(r["length"]), []).append(float(r["score"]))
    return out


def summarize(rows: list[dict], cfg: ScorecardConfig) -> dict:
    c = cells(rows)
    table = {r.name: {str(L): stats.summarize(c.get(r.name, {}).get(L, []), seed=cfg.seed) for L in cfg.lengths} for r in cfg.rows}
    for r in cfg.rows:  # the row over every asked length: the number with the most samples behind it
        table[r.name]["all"] = stats.summarize([x for L in cfg.lengths for x in c.get(r.name, {}).get(L, [])], seed=cfg.seed)
    eff = {}
    for rule in ("ruler", "nolima"):
        eff[rule] = {"tokens": stats.effective_length(c, rule), "ci95": list(stats.effective_length_interval(c, rule, seed=cfg.seed))}
    beyond = sorted({int(r["length"]) for r in rows if r.get("beyond_positions")})
    return {"version": cfg.version, "config_hash": config_hash(cfg), "table": table, "effective_length": eff,
            "beyond_positions": beyond, "samples": sum(1 for r in rows if r.get("score") is not None)}


def _cell(s: dict) -> str:
    return "n/a" if s["mean"] is None else f"{s['mean']:.0f} [{s['lo']:.0f}, {s['hi']:.0f}]"


def write_outputs(out: Path, summary: dict, cfg: ScorecardConfig, title: str) -> None:
    from .plots import heatmap, scorecard_picture
    from .report import markdown_table

    write_json(out / "scorecard.json", summary)
    names = [r.name for r in cfg.rows]
    body = [[n] + [_cell(summary["table"][n][str(L)]) for L in cfg.lengths] + [_cell(summary["table"][n]["all"])] for n in names]
    eff = summary["effective_length"]
    md = [f"# {title}", "", "![scorecard](scorecard.png)", "",
          f"Scorecard config version {cfg.version} ({summary['config_hash']}); {summary['samples']} answered samples; "
          f"score % with its 95% interval (Wilson for 0/1 scores, bootstrap otherwise).", "",
          markdown_table(["row"] + [str(L) for L in cfg.lengths] + ["all lengths"], body), "",
          f"Effective length, RULER rule (family average ≥ 85.6): **{eff['ruler']['tokens']}** tokens "
          f"(95% interval {eff['ruler']['ci95'][0]}–{eff['ruler']['ci95'][1]}).",
          f"Effective length, NoLiMa rule (≥ 85% of the model's own 1k score): **{eff['nolima']['tokens']}** tokens "
          f"(95% interval {eff['nolima']['ci95'][0]}–{eff['nolima']['ci95'][1]}).", ""]
    if summary["beyond_positions"]:
        md.append(f"Lengths beyond the model's positions (not asked): {summary['beyond_positions']}.")
    with atomic_open(out / "scorecard.md") as f:
        f.write("\n".join(md) + "\n")
    scorecard_picture({n: {L: summary["table"][n][str(L)] for L in cfg.lengths} for n in names}, out / "scorecard.png", title)
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.strip()]
    for n in names:
        t: dict[float, dict[int, list[float]]] = {}
        for r in rows:
            if r["row"] == n and r.get("score") is not None:
                t.setdefault(float(r["depth"]), {}).setdefault(int(r["length"]), []).append(100 * r["score"])
        if t:
            heatmap({d: {L: sum(v) / len(v) for L, v in per.items()} for d, per in t.items()}, out / f"heatmap_{n}.png", title=n)


def compare(rows_a: list[dict], rows_b: list[dict], seed: int = 0) -> list[dict]:
    """B − A per row × length, paired on the same sample ids: mean, 95% interval, won/tied/lost."""
    def by(rows):
        out: dict[tuple[str, int], dict[str, float]] = {}
        for r in rows:
            if r.get("score") is not None:
                out.setdefault((r["row"], int(r["length"])), {})[r["id"]] = float(r["score"])
        return out

    a, b = by(rows_a), by(rows_b)
    for side in (a, b):  # each row over all its lengths (sample ids are unique across lengths), then every row at once
        cells_ = list(side.items())
        for name in {k[0] for k, _ in cells_}:
            side[(name, "all")] = {i: v for (n, L), per in cells_ if n == name for i, v in per.items()}
        side[(ALL_ROWS, "all")] = {(n, i): v for (n, L), per in cells_ for i, v in per.items()}
    lines = []
    order = {ALL_ROWS: 1}  # the every-row line last
    for key in sorted(a.keys() & b.keys(), key=lambda k: (order.get(k[0], 0), k[0], k[1] == "all", 0 if k[1] == "all" else k[1])):
        d = stats.paired(a[key], b[key], seed=seed)
        if d:
            lines.append({"row": key[0], "length": key[1], **d})
    return lines


def compare_unpaired(rows_a: list[dict], rows_b: list[dict], seed: int = 0) -> list[dict]:
    """B − A per row × length for scorecards of *different* samples (another seed): two-sample bootstrap intervals.
    Used to check that a rerun with another seed agrees with the first within the intervals."""
    c = {k: cells(r) for k, r in (("a", rows_a), ("b", rows_b))}
    lines = []
    for name in [n for n in dict.fromkeys(r["row"] for r in rows_a) if n in c["b"]]:
        lengths = sorted(c["a"][name].keys() & c["b"][name].keys())
        for L in lengths + ["all"]:
            va = [x for k in lengths for x in c["a"][name][k]] if L == "all" else c["a"][name][L]
            vb = [x for k in lengths for x in c["b"][name][k]] if L == "all" else c["b"][name][L]
            d = stats.unpaired(va, vb, seed=seed)
            if d:
                lines.append({"row": name, "length": L, **d})
    return lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="model id or folder (default: the embedded SmolLM2)")
    p.add_argument("--adapter", default=None, help="adapter folder from `longrecall train`")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"scorecard YAML (default {DEFAULT_CONFIG})")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. --set 'samples={1024: 4}'")
    p.add_argument("--answer-prefix", action=argparse.BooleanOptionalAction, default=None,
                   help="RULER-style answer opening (default: the format recorded in the adapter, else off)")
    p.add_argument("--compare", nargs=2, metavar=("DIR_A", "DIR_B"), help="paired comparison B − A of two scorecards")
    p.add_argument("--output-dir", required=True, help="folder for results.jsonl, scorecard.{json,md,png} and heatmaps")


def _prompt_format(adapter: str | None) -> bool:
    """The answer-prefix setting an adapter was trained with (recorded at training time), else off."""
    if not adapter:
        return False
    from ..train.lora_plus import read_adapter_info

    try:
        info = read_adapter_info(Path(adapter))
    except Exception:  # an unreadable info file is reported when the adapter loads
        return False
    return bool(info.get("answer_prefix", False))


def _load_rows(folder: str) -> list[dict]:
    f = Path(folder) / "results.jsonl"
    if not f.exists():
        raise UserError(f"{f} not found: pass folders written by `longrecall eval scorecard --output-dir`")
    rows = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    if not rows or "row" not in rows[0]:
        raise UserError(f"{f} is not a scorecard's results: pass folders written by `longrecall eval scorecard`")
    return rows


def compare_main(a, out: Path) -> int:
    from .report import markdown_table

    ra, rb = (_load_rows(d) for d in a.compare)
    hashes = {r.get("config_hash") for r in ra} | {r.get("config_hash") for r in rb}
    lines = compare(ra, rb)
    if not lines:
        return _compare_unpaired_main(a, out, ra, rb, hashes)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compare.json", {"a": a.compare[0], "b": a.compare[1], "config_hashes": sorted(h for h in hashes if h), "lines": lines})
    body = [[x["row"], x["length"], x["n"], f"{x['mean']:+.1f}", f"[{x['lo']:+.1f}, {x['hi']:+.1f}]",
             f"{x['won']}/{x['tied']}/{x['lost']}", "yes" if x["significant"] else "no"] for x in lines]
    text = (f"# Scorecard comparison: {a.compare[1]} − {a.compare[0]}\n\nPaired on the same samples (same id: same prompt); "
            "points; seeded 95% paired bootstrap. A difference is claimed only when its interval excludes 0.\n\n"
            + markdown_table(["row", "length", "n", "B − A", "95% interval", "won/tied/lost", "claimed"], body) + "\n")
    with atomic_open(out / "compare.md") as f:
        f.write(text)
    print(text)
    return 0


def _compare_unpaired_main(a, out: Path, ra: list[dict], rb: list[dict], hashes: set) -> int:
    """Two scorecards with no sample in common (another seed): do they agree within their intervals?"""
    from .report import markdown_table

    lines = compare_unpaired(ra, rb)
    if not lines:
        raise UserError("the two scorecards share no row: compare scorecards made with the same rows")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compare.json", {"a": a.compare[0], "b": a.compare[1], "mode": "unpaired",
                                      "config_hashes": sorted(h for h in hashes if h), "lines": lines})
    body = [[x["row"], x["length"], f"{x['n_a']}/{x['n_b']}", f"{x['mean']:+.1f}", f"[{x['lo']:+.1f}, {x['hi']:+.1f}]",
             "yes" if x["agree"] else "no"] for x in lines]
    agree = sum(x["agree"] for x in lines)
    text = (f"# Scorecard agreement: {a.compare[1]} − {a.compare[0]}\n\nThe two share no sample (another seed), so "
            "the difference is unpaired: points, seeded 95% two-sample bootstrap. They agree where the interval "
            f"includes 0: {agree} of {len(lines)} lines (at 95%, about 1 line in 20 disagrees by chance alone).\n\n"
            + markdown_table(["row", "length", "n (A/B)", "B − A", "95% interval", "agree"], body) + "\n")
    with atomic_open(out / "compare.md") as f:
        f.write(text)
    print(text)
    return 0


def main(a) -> int:
    from ..config import parse_key_values

    out = Path(a.output_dir)
    if a.compare:
        return compare_main(a, out)
    cfg = load_scorecard_config(a.config, parse_key_values(a.set))
    prefix = _prompt_format(a.adapter) if a.answer_prefix is None else a.answer_prefix
    t0, timing = time.time(), {}
    rows = run_scorecard(cfg, out, model=a.model, adapter=a.adapter, answer_prefix=prefix, timing=timing)
    summary = summarize(rows, cfg)
    summary["wall_s_this_run"] = round(time.time() - t0, 1)
    summary["time_s_this_run"] = timing  # load, samples (prompt making), answers (generation): where the time went
    title = f"Scorecard: {a.model}" + (f" + {Path(a.adapter).name}" if a.adapter else "")
    write_outputs(out, summary, cfg, title)
    e = summary["effective_length"]
    print(f"scorecard: {summary['samples']} samples; effective length {e['ruler']['tokens']} (RULER), "
          f"{e['nolima']['tokens']} (NoLiMa); {out / 'scorecard.md'}")
    return 0
