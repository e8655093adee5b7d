"""Searching a gallery index: queries from a feature file or from images (through a model).

``search(index, queries, k)`` gives one ranked list per query: gallery id, cosine score, pid,
camid and image path. ``render_table`` prints them for people (rich), ``json.dumps`` of the
result for programs. ``reidkit search`` is a thin layer over these functions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reidkit.retrieval.index import GalleryIndex, IndexFileError

FEATURE_SUFFIXES = (".safetensors", ".npz")


@dataclass
class Queries:
    """(Q, D) query features plus what is known about each query (labels -1 when unknown)."""
    features: np.ndarray
    names: list[str]
    pids: np.ndarray
    camids: np.ndarray


def load_queries(source: str | Path, model: str | Path | None = None, index: GalleryIndex | None = None,
                 batch_size: int = 64) -> Queries:
    """Queries from a feature file, an image, or a folder of images.

    Images need a model: ``model`` or else the one recorded in ``index`` at build time. The
    model's feature dimension must match the index (checked before any image is read).
    """
    source = Path(source)
    if not source.exists():
        raise IndexFileError(f"{source}: query file or folder not found")
    if source.is_file() and source.suffix in FEATURE_SUFFIXES:
        from reidkit.evaluation.featurefile import load_features

        fs = load_features(source)
        names = fs.paths if fs.paths is not None else [f"{source.name}#{i}" for i in range(len(fs))]
        return Queries(fs.features, list(names), fs.pids, fs.camids)
    from reidkit.data.images import IMAGE_EXTENSIONS, is_image_file
    from reidkit.retrieval.encoder import ImageEncoder

    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.is_file() and is_image_file(p))
        if not paths:
            raise IndexFileError(f"{source}: no images found (extensions {sorted(IMAGE_EXTENSIONS)})")
    elif is_image_file(source):
        paths = [source]
    else:
        raise IndexFileError(f"{source}: neither a feature file ({', '.join(FEATURE_SUFFIXES)}) nor an image")
    encoder = ImageEncoder.for_index(model, index)
    feats = encoder.encode_files([str(p) for p in paths], batch_size=batch_size)
    n = len(paths)
    return Queries(feats, [str(p) for p in paths], np.full(n, -1, np.int64), np.full(n, -1, np.int64))


def search(index: GalleryIndex, queries: Queries, k: int = 20, source: str = "queries") -> list[dict]:
    """Ranked gallery for every query, as plain dicts (JSON-ready).

    Each entry: ``{"query", "pid", "camid", "results": [{"rank", "id", "score", "pid", "camid", "path"}]}``
    with ``score`` the cosine similarity (descending) and ``rank`` 1-based.
    """
    res = index.search(queries.features, k, source=source)
    out = []
    for qi in range(len(queries.features)):
        ranked = []
        for score, gid in zip(res.scores[qi], res.ids[qi]):
            if gid < 0:  # an approximate index may find fewer than k neighbours
                continue
            path = index.path_of(int(gid))
            ranked.append({"rank": len(ranked) + 1, "id": int(gid), "score": round(float(score), 6),
                           "pid": int(index.items.pids[gid]), "camid": int(index.items.camids[gid]),
                           "path": str(path) if path else None})
        out.append({"query": queries.names[qi], "pid": int(queries.pids[qi]), "camid": int(queries.camids[qi]),
                    "results": ranked})
    return out


def render_table(results: list[dict], max_queries: int = 20):
    """Rich tables, one per query (the first ``max_queries``); matching pids are marked."""
    from rich.console import Group
    from rich.table import Table

    tables = []
    for entry in results[:max_queries]:
        qpid = entry["pid"]
        title = f"query {entry['query']}" + (f"  (pid {qpid}, cam {entry['camid']})" if qpid >= 0 else "")
        t = Table(title=title, title_justify="left")
        for col, just in (("rank", "right"), ("score", "right"), ("pid", "right"), ("cam", "right"),
                          ("id", "right"), ("image", "left")):
            t.add_column(col, justify=just)
        for r in entry["results"]:
            same = qpid >= 0 and r["pid"] == qpid
            t.add_row(str(r["rank"]), f"{r['score']:.4f}", str(r["pid"]), str(r["camid"]), str(r["id"]),
                      r["path"] or "-", style="green" if same else None)
        tables.append(t)
    return Group(*tables)
