"""The report of a user's own run, and of any two feature files: what ``reidkit demo`` shows, for real data.

* :func:`write_run_report` (``reidkit report RUN_DIR``, and the end of ``train``/``adapt``) reads a
  run folder: ``config.yaml`` (which dataset), ``log.csv`` (training curves) and the best model
  (``best.safetensors``, else ``last.safetensors``), extracts the test split's features, and writes
  ``RUN_DIR/report/``: ``index.html``, ``cmc.png``, ``training_curves.png``, ``ranked_lists/*.png``.
* :func:`write_eval_report` (``reidkit eval Q G --report DIR``) does the same from two feature files.

Every piece is optional: a run without a log, a model, or a readable dataset still gets a page that
says what is missing and why, never an exception half-way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

MODEL_FILES = ("best.safetensors", "last.safetensors")


def metrics_row(name: str, res: dict) -> dict:
    """A results-table row in percent (mAP, R1, R5, R10, mINP) from ``evaluation.metrics.evaluate``'s dict."""
    cmc = np.asarray(res["cmc"])
    rank = lambda r: 100.0 * float(cmc[min(r, len(cmc)) - 1])  # noqa: E731
    return {"model": name, "mAP": 100 * float(res["mAP"]), "R1": rank(1), "R5": rank(5), "R10": rank(10),
            "mINP": 100 * float(res["mINP"])}


def _results_section(out: Path, name: str, query, gallery, metric: str, protocol: str,
                     ranked_queries: int, notes: list[str], dist=None):
    """(rows, figures, ranked-list paths) for one query/gallery pair; problems become notes.

    ``protocol`` ``'auto'``: market when both sets carry camera ids, else no-camera. ``dist``: a
    precomputed (N_q, N_g) distance matrix (re-ranked), else ``metric`` distances of the features.
    """
    from reidkit.evaluation.distances import compute_distance
    from reidkit.evaluation.metrics import evaluate
    from reidkit.report.plots import plot_cmc
    from reidkit.report.ranked_lists import save_ranked_lists

    if protocol == "auto":
        known = (query.camids >= 0).any() and (gallery.camids >= 0).any()
        protocol = "market" if known else "no-camera"
    if dist is None:
        dist = compute_distance(query.features, gallery.features, metric).numpy()
    dist = np.asarray(dist)
    res = evaluate(dist, query=query, gallery=gallery, metric=metric, protocol=protocol)
    rows, figures, ranked = [metrics_row(name, res)], [], []
    if res["num_valid_queries"] == 0:
        notes.append("no query has a valid gallery match (no labels, or no cross-camera match): "
                     "no CMC curve or ranked lists")
        return rows, figures, ranked
    figures.append(("CMC curve", plot_cmc({name: np.asarray(res["cmc"])}, out / "cmc.png")))
    if query.paths is None or gallery.paths is None:
        notes.append("the feature files carry no image paths: no ranked lists")
    else:
        ranked = save_ranked_lists(dist, query, gallery, out / "ranked_lists", num_queries=ranked_queries,
                                   protocol="market" if protocol == "market" else "no-camera")
    return rows, figures, ranked


def _step(notes: list[str], what: str, fn: Callable, *args, **kwargs):
    """Run one piece of the report; a failure becomes a note naming it, and the report goes on."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - a report must not lose the rest for one broken piece
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        notes.append(f"{what}: skipped ({first})")
        return None


def write_eval_report(out_dir: str | Path, query, gallery, *, qpath: str | Path = "query",
                      gpath: str | Path = "gallery", metric: str = "cosine", protocol: str = "auto",
                      ranked_queries: int = 8, title: str | None = None, distmat=None,
                      label: str | None = None) -> Path:
    """Report of two feature sets (``FeatureSet``): results table, CMC curve, ranked lists; returns
    index.html. ``distmat``: use these (e.g. re-ranked) distances instead of ``metric`` ones."""
    from reidkit.report.html import write_html_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes = [f"query: {Path(qpath).resolve()} ({len(query)} features)",
             f"gallery: {Path(gpath).resolve()} ({len(gallery)} features)",
             f"metric {metric}, protocol {protocol}"]
    part = _step(notes, "evaluation", _results_section, out, label or Path(qpath).stem, query, gallery, metric,
                 protocol, ranked_queries, notes, distmat)
    rows, figures, ranked = part or ([], [], [])
    return write_html_report(out, title=title or f"reidkit eval: {Path(qpath).name} vs {Path(gpath).name}",
                             results=rows, figures=figures, ranked_lists=ranked, notes=notes)


def _run_features(model_path: Path, cfg: dict, notes: list[str]):
    """Query and gallery features of the run's model on its config's test dataset."""
    from reidkit.data.datasets import load_dataset
    from reidkit.data.transforms import build_test_transform
    from reidkit.evaluation.extract import extract_features
    from reidkit.models import load_model

    data = cfg.get("data") or {}
    fmt, root = data.get("format"), data.get("root")
    if not fmt or not root:
        raise ValueError("config.yaml names no data.format / data.root")
    ds = load_dataset(fmt, root, **(data.get("options") or {}))
    if not ds.query or not ds.gallery:
        raise ValueError(f"{root}: the {fmt} dataset has no query/gallery split to evaluate on")
    model = load_model(model_path).eval()
    size = tuple(model.config.get("img_size") or data.get("size") or (256, 128))
    tf = build_test_transform(size, data.get("test_interpolation") or "bilinear")
    kw = dict(transform=tf, batch_size=int((cfg.get("eval") or {}).get("batch_size") or 128), num_workers=0)
    q = extract_features(model, ds.query, description="report: extract query", **kw)
    g = extract_features(model, ds.gallery, description="report: extract gallery", **kw)
    notes.append(f"test data: {fmt} at {root} ({len(q)} query, {len(g)} gallery images)")
    return q, g


def write_run_report(run_dir: Path, ranked_queries: int = 8, evaluate_model: bool = True) -> Path:
    """Build ``RUN_DIR/report/index.html`` (+ CMC, training curves, ranked lists) from a run folder.

    Uses what is there: ``config.yaml`` for the dataset, ``log.csv`` for the curves, the best model
    (``best.safetensors``, else ``last.safetensors``) for the results. What is missing or fails is
    named in the page's notes. ``evaluate_model=False`` draws the curves only (no extraction).
    """
    import yaml

    from reidkit.report.html import write_html_report
    from reidkit.report.plots import plot_training_curves

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run folder not found")
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = [f"run folder: {run_dir.resolve()}"]
    cfg: dict = {}
    if (run_dir / "config.yaml").is_file():
        cfg = _step(notes, "config.yaml", lambda: yaml.safe_load((run_dir / "config.yaml").read_text()) or {}) or {}
    else:
        notes.append("config.yaml: missing (no dataset to evaluate on)")
    figures, rows, ranked = [], [], []
    log = run_dir / "log.csv"
    if log.is_file():
        fig = _step(notes, "training curves", plot_training_curves, log, out / "training_curves.png",
                    title=run_dir.name)
        if fig is not None:
            figures.append(("Training curves", fig))
    else:
        notes.append("log.csv: missing (no training curves)")
    model_path = next((run_dir / n for n in MODEL_FILES if (run_dir / n).is_file()), None)
    if model_path is None:
        notes.append(f"no model file ({' or '.join(MODEL_FILES)}): no results")
    elif evaluate_model and cfg:
        feats = _step(notes, "feature extraction", _run_features, model_path, cfg, notes)
        if feats is not None:
            part = _step(notes, "evaluation", _results_section, out, model_path.name, *feats,
                         "cosine", "auto", ranked_queries, notes)
            if part is not None:
                rows, more, ranked = part
                figures = more + figures
    return write_html_report(out, title=f"reidkit run: {run_dir.name}", results=rows, figures=figures,
                             ranked_lists=ranked, notes=notes)
