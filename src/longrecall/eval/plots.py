"""Pictures of evaluation results: depth × length heatmaps (red → green, values written in), lines by length.

    OMP_NUM_THREADS=1 PYTHONPATH=src python -m pytest tests/eval/test_plots.py -q

Pure functions of their data; matplotlib's object API on the Agg canvas (no pyplot state, works headless).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

Table = Mapping[float, Mapping[int, "float | None"]]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    from ..io import atomic_open

    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", bbox_inches="tight")
    return path


def heatmap(table: Table, path: str | os.PathLike, title: str = "", vmin: float = 0.0, vmax: float = 100.0,
            cmap: str = "RdYlGn", signed: bool = False) -> Path:
    """Depth (y, 0 at the top) × length (x) of scores; None cells grey with 'n/a'. signed=True writes +/− values."""
    import numpy as np
    from matplotlib import colormaps

    depths = sorted(table)
    lengths = sorted({L for per in table.values() for L in per})
    grid = np.full((len(depths), len(lengths)), np.nan)
    for i, d in enumerate(depths):
        for j, L in enumerate(lengths):
            v = table[d].get(L)
            grid[i, j] = np.nan if v is None else float(v)
    fig = _figure(1.2 + 0.9 * max(len(lengths), 2), 1.0 + 0.55 * max(len(depths), 2))
    ax = fig.add_subplot()
    cm = colormaps[cmap].with_extremes(bad="#d0d0d0")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cm, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(lengths)), [str(L) for L in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(title)
    for i in range(len(depths)):
        for j in range(len(lengths)):
            v = grid[i, j]
            text = "n/a" if np.isnan(v) else (f"{v:+.0f}" if signed else f"{v:.0f}")
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def line_chart(series: Mapping[str, Mapping[int, "float | None"]], path: str | os.PathLike, title: str = "",
               ylabel: str = "score %", threshold: float | None = None, logx: bool = True, ylim: tuple | None = None,
               xlabel: str = "context length (tokens)") -> Path:
    """One line per series over context length (log2 axis); an optional dashed threshold line."""
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot()
    for name, per in series.items():
        pts = sorted((L, v) for L, v in per.items() if v is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                    linewidth=2.5 if name == "average" else 1.3, label=name)
    if threshold is not None:
        ax.axhline(threshold, linestyle="--", color="grey", linewidth=1, label=f"threshold {threshold:g}")
    if logx:
        ax.set_xscale("log", base=2)
    lengths = sorted({L for per in series.values() for L in per})
    if lengths:
        step = -(-len(lengths) // 16)  # at most 16 labels: 30 layers' numbers would run into each other
        ax.set_xticks(lengths[::step], [str(L) for L in lengths[::step]])
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def scorecard_picture(table: Mapping[str, Mapping[int, Mapping]], path: str | os.PathLike, title: str = "") -> Path:
    """Rows (families) × lengths coloured by score, each cell showing the mean and its 95% interval."""
    import numpy as np
    from matplotlib import colormaps

    names = list(table)
    lengths = sorted({L for per in table.values() for L in per})
    grid = np.full((len(names), len(lengths)), np.nan)
    for i, n in enumerate(names):
        for j, L in enumerate(lengths):
            s = table[n].get(L) or {}
            if s.get("mean") is not None:
                grid[i, j] = s["mean"]
    fig = _figure(1.8 + 1.25 * max(len(lengths), 2), 0.9 + 0.42 * max(len(names), 2))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=colormaps["RdYlGn"].with_extremes(bad="#d0d0d0"), vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(lengths)), [f"{L // 1024}k" if L % 1024 == 0 else str(L) for L in lengths])
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("context length (tokens)")
    ax.set_title(title)
    for i, n in enumerate(names):
        for j, L in enumerate(lengths):
            s = table[n].get(L) or {}
            text = "n/a" if s.get("mean") is None else f"{s['mean']:.0f}\n[{s['lo']:.0f}–{s['hi']:.0f}] n={s['n']}"
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color="black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="score %")
    return _save(fig, path)
