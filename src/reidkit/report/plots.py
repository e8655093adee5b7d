"""Plots of a run: CMC curves of several models, and training curves from a run's ``log.csv``.

Plain functions that write PNG files with matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path) -> Path:
    """Lay out ``fig``, write it as a PNG at ``path`` (folders created) and free it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")  # legends beside the axes stay in the picture
    plt.close(fig)
    return path


def plot_cmc(curves: Mapping[str, np.ndarray], path: str | Path, max_rank: int = 20,
             title: str = "CMC") -> Path:
    """Write the CMC curves ``{label: cmc}`` (each (R,) in [0, 1], rank-1 first) as a PNG."""
    if not curves:
        raise ValueError(f"{path}: no CMC curves to plot")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=120)
    for label, cmc in curves.items():
        cmc = np.asarray(cmc, dtype=np.float64).reshape(-1)[:max_rank]
        ranks = np.arange(1, len(cmc) + 1)
        ax.plot(ranks, 100 * cmc, marker="o", markersize=3, label=f"{label} (R1 {100 * cmc[0]:.1f}%)")
    ax.set(xlabel="rank", ylabel="matching rate (%)", title=title, ylim=(0, 100), xlim=(1, max_rank))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(plt, fig, path)


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a ``log.csv`` as float arrays (NaN where a row has no value, e.g. no eval that epoch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: training log not found")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: training log has no rows")
    cols: dict[str, np.ndarray] = {}
    for key in rows[0].keys() | set().union(*(r.keys() for r in rows)):
        vals = []
        for r in rows:
            try:
                vals.append(float(r.get(key) or "nan"))
            except ValueError:
                vals.append(math.nan)
        arr = np.asarray(vals)
        if not np.isnan(arr).all():
            cols[key] = arr
    return cols


# Panels of the training-curves figure: which log columns go together, and the unit shown.
_LOSS_NAMES = ("id", "triplet", "center", "dino", "contrast", "memory")
_METRICS = ("mAP", "R1", "R5", "R10", "mINP")
_PANELS = (("losses", "", lambda k: "loss" in k or k in _LOSS_NAMES),
           ("retrieval (%)", "%", lambda k: k in _METRICS),
           ("training accuracy (%)", "%", lambda k: k in ("acc", "accuracy")),
           ("learning rate", "", lambda k: k == "lr"),
           ("throughput (images/s)", "", lambda k: k == "images_per_s"))


def curve_panels(cols: dict[str, np.ndarray]) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """``[(panel title, [(column, values)])]`` of a log's columns, each in its panel's unit.

    Percent panels show percent: a fraction column (all values in [0, 1], e.g. ``acc``) is scaled
    by 100, so training accuracy and retrieval read on the same scale.
    """
    x_key = "step" if "step" in cols else "epoch"
    order = {k: i for i, k in enumerate(_METRICS)}
    keys = sorted(cols, key=lambda k: (order.get(k, -1), k))
    panels = []
    for name, unit, pick in _PANELS:
        series = []
        for k in keys:
            if k == x_key or not pick(k):
                continue
            v = cols[k]
            finite = v[~np.isnan(v)]
            if unit == "%" and len(finite) and finite.min() >= 0 and finite.max() <= 1.0:
                v = 100.0 * v
            series.append((k, v))
        if series:
            panels.append((name, series))
    return panels


def plot_training_curves(log_csv: str | Path, path: str | Path, title: str = "training",
                         x_label: str | None = None) -> Path:
    """Write the curves of a run's ``log.csv`` (losses, retrieval metrics, accuracy, lr, speed) as one PNG.

    Panels on a grid of two columns (about 1100 px wide); each legend sits beside its panel, never
    over the lines; accuracy and retrieval metrics are both in %. The x axis is the log's ``step``
    column, else its ``epoch`` column (named ``x_label`` if given: a fine-tuning log's step is its
    epoch, a pre-training log's step its iteration).
    """
    cols = read_log(log_csv)
    x_key = "step" if "step" in cols else "epoch"
    if x_key not in cols:
        raise ValueError(f"{log_csv}: needs a 'step' or 'epoch' column; found {sorted(cols)}")
    x = cols[x_key]
    panels = curve_panels(cols)
    if not panels:
        raise ValueError(f"{log_csv}: no loss, metric, lr or speed columns to plot; found {sorted(cols)}")
    plt = _pyplot()
    ncols = 1 if len(panels) == 1 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.0 * nrows), dpi=100, squeeze=False)
    for ax, (name, series) in zip(axes.flat, panels):
        for k, v in series:
            ok = ~np.isnan(v)
            ax.plot(x[ok], v[ok], marker="o" if ok.sum() < 30 else None, markersize=3, label=k)
        ax.set(title=name, xlabel=x_label or x_key)
        ax.grid(alpha=0.3)
        if name == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if name.endswith("(%)"):
            ax.set_ylim(0, 100)
        # beside the axes, so no curve is ever hidden behind it
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)
