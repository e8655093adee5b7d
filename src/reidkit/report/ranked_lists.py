"""Ranked-list images: a query, then its top-k gallery matches, right in green, wrong in red.

The ranking follows the evaluation protocol, so a picture shows what the metric counted:
gallery images of the query's own identity seen by the query's own camera, and junk (pid -1),
are left out (Market-1501 protocol). Camera ids are written under every image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from reidkit.evaluation.featurefile import FeatureSet

GREEN, RED, BLUE = (30, 170, 60), (210, 40, 40), (40, 90, 200)


def protocol_ranking(dist_row: np.ndarray, q_pid: int, q_camid: int, g_pids: np.ndarray, g_camids: np.ndarray,
                     topk: int = 10, protocol: str = "market") -> np.ndarray:
    """Gallery indices of the ``topk`` nearest valid entries (ties broken by gallery index)."""
    valid = g_pids != -1
    if protocol == "market":
        valid &= ~((g_pids == q_pid) & (g_camids == q_camid))
    idx = np.flatnonzero(valid)
    order = np.lexsort((idx, dist_row[idx]))  # distance, then index: deterministic
    return idx[order[:topk]]


def _tile(path: str, size: tuple[int, int], border: tuple[int, int, int], caption: str, pad: int = 3) -> Image.Image:
    h, w = size
    try:
        from reidkit.data.images import load_rgb
        img = load_rgb(path).resize((w, h), Image.BILINEAR)
    except (OSError, ValueError):
        img = Image.new("RGB", (w, h), (128, 128, 128))  # unreadable: grey, the caption still says which
    tile = Image.new("RGB", (w + 2 * pad, h + 2 * pad + 12), (255, 255, 255))
    ImageDraw.Draw(tile).rectangle([0, 0, w + 2 * pad - 1, h + 2 * pad - 1], fill=border)
    tile.paste(img, (pad, pad))
    ImageDraw.Draw(tile).text((pad, h + 2 * pad), caption, fill=(0, 0, 0))
    return tile


def ranked_list_image(query_path: str, q_pid: int, q_camid: int, gallery_paths: Sequence[str],
                      g_pids: Sequence[int], g_camids: Sequence[int], size: tuple[int, int] = (128, 64),
                      gap: int = 10) -> Image.Image:
    """One strip: the query (blue border), a gap, then the given gallery images in order."""
    def cam(c: int) -> str:
        return f"c{c + 1}" if c >= 0 else "c?"

    tiles = [_tile(query_path, size, BLUE, f"Q {cam(q_camid)}")]
    for i, (p, pid, c) in enumerate(zip(gallery_paths, g_pids, g_camids)):
        tiles.append(_tile(p, size, GREEN if pid == q_pid else RED, f"{i + 1} {cam(int(c))}"))
    tw, th = tiles[0].size
    strip = Image.new("RGB", (tw * len(tiles) + gap, th), (255, 255, 255))
    for i, t in enumerate(tiles):
        strip.paste(t, (i * tw + (gap if i else 0), 0))
    return strip


def save_ranked_lists(distmat: np.ndarray, query: FeatureSet, gallery: FeatureSet, out_dir: str | Path,
                      num_queries: int = 8, topk: int = 10, seed: int = 0, protocol: str = "market",
                      size: tuple[int, int] = (128, 64)) -> list[Path]:
    """Write ``num_queries`` ranked lists (queries drawn evenly by seed) as PNGs; returns their paths.

    ``distmat`` (N_q, N_g); both feature sets need ``paths``.
    """
    if query.paths is None or gallery.paths is None:
        raise ValueError("ranked lists need image paths in both feature sets")
    distmat = np.asarray(distmat)
    if distmat.shape != (len(query), len(gallery)):
        raise ValueError(f"distance matrix is {distmat.shape}, expected ({len(query)}, {len(gallery)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(query), min(num_queries, len(query)), replace=False))
    written = []
    for n, qi in enumerate(picks):
        q_pid, q_cam = int(query.pids[qi]), int(query.camids[qi])
        top = protocol_ranking(distmat[qi], q_pid, q_cam, gallery.pids, gallery.camids, topk, protocol)
        img = ranked_list_image(query.paths[qi], q_pid, q_cam, [gallery.paths[i] for i in top],
                                gallery.pids[top], gallery.camids[top], size)
        path = out_dir / f"query_{n:02d}_{Path(query.paths[qi]).stem}.png"
        img.save(path)
        written.append(path)
    return written
