"""Sliding-window perplexity at several evaluation lengths, as LongLoRA reports it (windows of the length, stride 256).

    longrecall eval ppl --model default --lengths 1024,4096 --stride 256 --max-windows 8 --output-dir runs/ppl
    longrecall eval ppl --compare runs/ppl/base runs/ppl/tuned --output-dir runs/ppl/compare   # B / A, paired by window

Windows of `length` tokens start every `stride` tokens; the first window scores all its tokens, each later window
only its last `stride` tokens, so every token is scored once with as much context as the window allows.
`ppl` covers every scored token; `ppl_long` only the later windows' tokens (each seen with >= length − stride
tokens of context), the figure that shows long-context modelling. The loss is computed from hidden states in
chunks, so no fp32 N × vocab logits tensor ever exists (at 8k × 49k vocab that alone would be 1.6 GB).
"""
from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

from ..errors import UserError

log = logging.getLogger(__name__)
HELDOUT_SEED = 1_000_003  # prose seed for perplexity text; training data generators must not use it


def window_plan(n_tokens: int, length: int, stride: int, max_windows: int | None = None) -> list[tuple[int, int, int]]:
    """[(begin, end, n_targets)]: windows [begin, end) whose last n_targets tokens are scored."""
    if length < 2 or stride < 1 or stride > length:
        raise UserError(f"need 2 <= length and 1 <= stride <= length (got length {length}, stride {stride}): fix --stride")
    plan, prev_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + length, n_tokens)
        plan.append((begin, end, end - prev_end))
        prev_end = end
        if end == n_tokens or (max_windows and len(plan) >= max_windows):
            break
    return plan


def _parts(model):
    """The decoder (hidden states) and the output head of a causal LM, peft-wrapped or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base.model
    return decoder, base.get_output_embeddings()


def window_nll(model, ids, n_targets: int, chunk: int = 1024, autocast: bool = False) -> float:
    """Sum of next-token NLL over the last n_targets tokens of `ids` (1-D LongTensor), head applied in chunks."""
    import contextlib

    import torch
    import torch.nn.functional as F

    decoder, head = _parts(model)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    n_targets = min(n_targets, len(ids) - 1)  # the first token of the text has nothing to be predicted from
    with torch.inference_mode(), ctx:
        hidden = decoder(input_ids=ids[None], use_cache=False).last_hidden_state[0]
        total = 0.0
        first = len(ids) - 1 - n_targets  # hidden state at position p predicts token p + 1
        for start in range(first, len(ids) - 1, chunk):
            stop = min(start + chunk, len(ids) - 1)
            logits = head(hidden[start:stop]).float()
            total += float(F.cross_entropy(logits, ids[start + 1:stop + 1], reduction="sum"))
    return total


def perplexity(model, token_ids, length: int, stride: int = 256, max_windows: int | None = 8, chunk: int = 1024,
               autocast: bool = False) -> dict:
    """Perplexity of `token_ids` at one evaluation length (see the module docstring for the windowing)."""
    import torch

    ids = torch.as_tensor(token_ids, dtype=torch.long)
    plan = window_plan(len(ids), length, stride, max_windows)
    nll = nll_long = 0.0
    count = count_long = 0
    per_window, per_count = [], []
    t0 = time.perf_counter()
    for i, (begin, end, n_targets) in enumerate(plan):
        window = ids[begin:end]
        n = min(n_targets, len(window) - 1)
        value = window_nll(model, window, n, chunk, autocast)
        nll, count = nll + value, count + n
        per_window.append(value)
        per_count.append(n)
        if i > 0:
            nll_long, count_long = nll_long + value, count_long + n
    return {
        "length": length,
        "ppl": math.exp(nll / count),
        "ppl_long": math.exp(nll_long / count_long) if count_long else None,
        "tokens_scored": count,
        "windows": len(plan),
        "window_nll": per_window,
        "window_tokens": per_count,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def compare(a: dict, b: dict, resamples: int = 2000, seed: int = 0) -> list[dict]:
    """B's perplexity over A's at each length both measured, in % change, with a seeded 95% bootstrap interval over
    the windows (the same windows of the same text for both, so the pairing is by window). Each window scores its
    own tokens, so a resample of windows is a resample of scored tokens in runs."""
    import random

    for key in ("text", "stride", "max_windows"):
        if a.get(key) != b.get(key):
            raise UserError(f"the two perplexity runs differ in {key} ({a.get(key)!r} vs {b.get(key)!r}): "
                            "rerun one with the other's --text, --stride and --max-windows")
    by_len = {r["length"]: r for r in b["results"]}
    lines = []
    for ra in a["results"]:
        rb = by_len.get(ra["length"])
        if rb is None:
            continue
        if "window_nll" not in ra or "window_nll" not in rb:
            raise UserError("a perplexity.json without per-window losses (made before they were saved): rerun `longrecall eval ppl` for it")
        na, nb, n = ra["window_nll"], rb["window_nll"], ra["window_tokens"]
        if rb["window_tokens"] != n:
            raise UserError(f"length {ra['length']}: the two runs scored different windows: rerun both with the same text")

        def change(idx) -> float:
            tokens = sum(n[i] for i in idx)
            return 100 * (math.exp((sum(nb[i] for i in idx) - sum(na[i] for i in idx)) / tokens) - 1)

        rng, k = random.Random(seed), len(n)
        draws = sorted(change([rng.randrange(k) for _ in range(k)]) for _ in range(resamples))
        lines.append({"length": ra["length"], "ppl_a": ra["ppl"], "ppl_b": rb["ppl"], "windows": k,
                      "change_pct": change(range(k)), "lo": draws[int(0.025 * resamples)],
                      "hi": draws[int(0.975 * resamples) - 1]})
    if not lines:
        raise UserError("the two perplexity runs share no length: rerun one with the other's --lengths")
    return lines


def compare_main(a_dir: Path, b_dir: Path, out: Path) -> list[dict]:
    import json

    from ..io import atomic_open, write_json

    def load(d: Path) -> dict:
        f = d / "perplexity.json"
        if not f.exists():
            raise UserError(f"{f} does not exist: run `longrecall eval ppl --output-dir {d}` first")
        return json.loads(f.read_text())

    lines = compare(load(a_dir), load(b_dir))
    write_json(out / "compare.json", {"a": str(a_dir), "b": str(b_dir), "lines": lines})
    rows = [f"| {x['length']} | {x['windows']} | {x['ppl_a']:.3f} | {x['ppl_b']:.3f} | {x['change_pct']:+.1f}% "
            f"[{x['lo']:+.1f}, {x['hi']:+.1f}] |" for x in lines]
    with atomic_open(out / "compare.md") as fh:
        fh.write(f"# Perplexity: {b_dir} over {a_dir}\n\nSame text and windows; change of B's perplexity over A's, "
                 "seeded 95% bootstrap over the windows.\n\n| length | windows | A | B | B / A − 1 |\n|---|---|---|---|---|\n"
                 + "\n".join(rows) + "\n")
    return lines


def heldout_tokens(tokenizer, n_tokens: int, text: str | None = None, seed: int = HELDOUT_SEED) -> list[int]:
    """Token ids of the user's text, or of generated prose (seed unused in training) grown until n_tokens fit."""
    if text is not None:
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    from ..niah.haystacks import prose_text

    sentences = max(64, n_tokens // 12)
    while True:
        ids = tokenizer(prose_text(sentences, seed), add_special_tokens=False)["input_ids"]
        if len(ids) >= n_tokens:
            return ids[:n_tokens]
        sentences *= 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="HF id, local folder, or 'default' (embedded SmolLM2-135M)")
    parser.add_argument("--adapter", default=None, help="peft adapter folder written by `longrecall train`")
    parser.add_argument("--lengths", default="1024,4096", help="comma-separated evaluation lengths in tokens")
    parser.add_argument("--text", default=None, help="UTF-8 text file to evaluate on, or 'pkgdocs' (the installed packages' READMEs: real prose); default: held-out generated prose")
    parser.add_argument("--stride", type=int, default=256, help="window step; later windows score only their last stride tokens")
    parser.add_argument("--max-windows", type=int, default=8, help="windows per length (bounds the cost)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32", "autocast"],
                        help="auto: bfloat16 weights where bf16 is native (AVX-512 BF16, AMX, GPUs), else float32")
    parser.add_argument("--chunk", type=int, default=1024, help="positions per output-head chunk (memory bound)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                        help="two output folders of this command: B's perplexity over A's per length, paired by window")
    parser.add_argument("--output-dir", default="runs/ppl", help="where perplexity.json and perplexity.png go")


def main(args: argparse.Namespace) -> int:
    from ..io import write_json
    from ..models import load_model, load_tokenizer
    from .backends import load_adapter, max_positions
    from .plots import line_chart

    from ..units import parse_lengths, positive_int

    if args.compare:
        for x in compare_main(Path(args.compare[0]), Path(args.compare[1]), Path(args.output_dir)):
            print(f"length {x['length']}: B / A {x['change_pct']:+.1f}% [{x['lo']:+.1f}, {x['hi']:+.1f}] "
                  f"over {x['windows']} windows ({x['ppl_a']:.3f} -> {x['ppl_b']:.3f})")
        return 0
    lengths = sorted(set(parse_lengths(args.lengths)))
    if not lengths:
        raise UserError("no --lengths: give lengths such as 1024,4k")
    if min(lengths) < 2:
        raise UserError(f"--lengths {min(lengths)}: a perplexity window needs at least 2 tokens (e.g. 1024,4k)")
    positive_int(args.stride, "--stride")
    positive_int(args.max_windows, "--max-windows")
    positive_int(args.chunk, "--chunk")
    if args.adapter:
        from ..train.lora_plus import read_adapter_info

        read_adapter_info(args.adapter)
    tok = load_tokenizer(args.model)
    model = load_model(args.model, dtype="float32" if args.dtype == "autocast" else args.dtype)
    if args.adapter:
        model = load_adapter(model, args.adapter, args.model)
    model.eval()
    limit = max_positions(model.config)
    text = None
    if args.text == "pkgdocs":  # real human-written prose, offline: the installed packages' READMEs
        from ..niah.haystacks import package_docs_text

        text = package_docs_text()
    elif args.text:
        path = Path(args.text)
        if not path.exists():
            raise UserError(f"text file {path} not found: check --text")
        text = path.read_text(encoding="utf-8", errors="replace")
    need = max(lengths) + args.stride * (args.max_windows - 1)
    ids = heldout_tokens(tok, need, text)
    results = []
    for L in lengths:
        if len(ids) < L:
            raise UserError(f"the text has {len(ids)} tokens, fewer than length {L}: pass a longer --text or smaller --lengths")
        beyond = limit is not None and L > limit
        if beyond:
            log.warning("length %d is beyond the model's %d positions: its perplexity is extrapolation", L, limit)
        res = perplexity(model, ids, L, args.stride, args.max_windows, args.chunk, autocast=args.dtype == "autocast")
        res["beyond_positions"] = beyond
        results.append(res)
        long_part = (f"long-context tokens {res['ppl_long']:.3f}" if res["ppl_long"] is not None
                     else "one window: no long-context tokens, raise --max-windows")
        print(f"length {L}: ppl {res['ppl']:.3f} ({long_part}), {res['windows']} windows, {res['seconds']} s")
    out = Path(args.output_dir)
    write_json(out / "perplexity.json", {"model": args.model, "adapter": args.adapter, "text": args.text or f"prose seed {HELDOUT_SEED}",
                                         "stride": args.stride, "max_windows": args.max_windows, "results": results})
    series = {"ppl": {r["length"]: r["ppl"] for r in results}, "ppl_long": {r["length"]: r["ppl_long"] for r in results}}
    line_chart(series, out / "perplexity.png", title="perplexity by evaluation length", ylabel="perplexity")
    print(f"wrote {out / 'perplexity.json'}")
    return 0
