"""Video re-ID protocols on tracklet / frame feature sets, and GCR re-ranking with tracklet profiles.

Feature sets (from ``reidkit.evaluation.video_extract``; both are ordinary ``FeatureSet`` files):
  * tracklet features: one row per tracklet, ``meta['kind'] == 'tracklets'``;
  * frame features: one row per frame, ``meta['kind'] == 'frames'`` and ``meta['tracklet_index']``
    (the row of the frame's tracklet in the matching tracklet file).

Protocols (the ranking rules are MARS's, which are Market-1501's: ``evaluation.metrics.evaluate``
with ``protocol='market'`` computes them, so the numbers are those of the image evaluator):
  * **video-to-video** (``video_to_video``): query tracklets against gallery tracklets. For each
    query, gallery tracklets with the same pid *and* the same camera are removed, junk (pid -1) is
    ignored, distractors (pid 0) stay as negatives; a query with no positive left (its identity is
    missing from the gallery, as happens on MARS) is skipped and counted in ``num_skipped_queries``.
  * **image-to-video** (``image_to_video``): one frame of each query tracklet against the gallery
    tracklets, same rules. ``query_frame='first'`` (default) takes the tracklet's first frame, the
    choice of TKP and VKD on MARS; ``'middle'`` its middle frame; ``'all'`` makes every frame a query.
  * **image-to-image** (``image_to_image``): query frames against gallery frames, same rules (the
    other frames of the query's own tracklet share its pid and camera, so they are removed too).
Every result also carries ``num_queries_absent`` (queries whose pid appears nowhere in the gallery).

GCR for video (``gcr_video``): the GCRV profile vectors are computed per *tracklet* (the pooled
tracklet feature is the tracklet mean the official code uses), per camera, then GCR runs on the
tracklet graph, through ``reidkit.evaluation.rerank_gcr.gcr`` with the official MARS preset
(k1 15, k2 3, beta 0.2, scale 0.3, 3 rounds, PVG lambda 10). ``statistics_from='all'`` follows the
official MARS evaluation, which appends the query tracklets to the gallery before building the
per-camera statistics and the graph; ``'gallery'`` uses the gallery tracklets only.
"""
from __future__ import annotations

import numpy as np

from reidkit.evaluation.featurefile import FeatureFileError, FeatureSet
from reidkit.evaluation.metrics import evaluate

QUERY_FRAMES = ("first", "middle", "all")
MODES = ("v2v", "i2v", "i2i")


def kind_of(fs: FeatureSet) -> str:
    """'tracklets', 'frames' or 'images' (a plain feature file)."""
    return str(fs.meta.get("kind", "images")) if isinstance(fs.meta, dict) else "images"


def _need(fs: FeatureSet, kind: str, role: str) -> None:
    got = kind_of(fs)
    if got != kind:
        raise FeatureFileError(f"{role}: needs {kind} features (meta kind {kind!r}), got {got!r}; "
                               "extract them with `reidkit extract-video`")
    if kind == "frames":
        idx = fs.meta.get("tracklet_index")
        if idx is None or len(idx) != len(fs):
            raise FeatureFileError(f"{role}: frame features need meta['tracklet_index'] with one entry per "
                                   f"row ({len(fs)} rows, {None if idx is None else len(idx)} entries)")


def _absent(query: FeatureSet, gallery: FeatureSet) -> int:
    gp = np.unique(gallery.pids[gallery.pids >= 0])
    qp = query.pids
    return int(((qp >= 0) & ~np.isin(qp, gp)).sum())


def _run(query: FeatureSet, gallery: FeatureSet, **kw) -> dict:
    kw.setdefault("protocol", "market")
    out = evaluate(query=query, gallery=gallery, **kw)
    out["num_queries_absent"] = _absent(query, gallery)
    return out


def video_to_video(query: FeatureSet, gallery: FeatureSet, **evaluate_kw) -> dict:
    """Tracklet queries against tracklet gallery under MARS rules (``evaluate`` keywords pass through)."""
    _need(query, "tracklets", "query")
    _need(gallery, "tracklets", "gallery")
    return _run(query, gallery, **evaluate_kw)


def select_query_frames(frames: FeatureSet, query_frame: str = "first") -> FeatureSet:
    """The query images of image-to-video: one frame per tracklet ('first' / 'middle') or all of them."""
    _need(frames, "frames", "query frames")
    if query_frame not in QUERY_FRAMES:
        raise ValueError(f"query_frame must be one of {', '.join(QUERY_FRAMES)}, got {query_frame!r}")
    if query_frame == "all":
        return frames
    owner = np.asarray(frames.meta["tracklet_index"], dtype=np.int64)
    # frames are stored tracklet after tracklet in temporal order; pick within each run of one owner
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    counts = np.diff(np.r_[starts, len(owner)])
    rows = starts if query_frame == "first" else starts + (counts - 1) // 2
    paths = None if frames.paths is None else [frames.paths[r] for r in rows.tolist()]
    meta = {**frames.meta, "tracklet_index": owner[rows].tolist(), "query_frame": query_frame}
    return FeatureSet(frames.features[rows], frames.pids[rows], frames.camids[rows], paths, meta)


def image_to_video(query_frames: FeatureSet, gallery: FeatureSet, query_frame: str = "first",
                   **evaluate_kw) -> dict:
    """Frame queries (``query_frame`` of each query tracklet) against the gallery tracklets."""
    _need(gallery, "tracklets", "gallery")
    return _run(select_query_frames(query_frames, query_frame), gallery, **evaluate_kw)


def image_to_image(query_frames: FeatureSet, gallery_frames: FeatureSet, query_frame: str = "all",
                   **evaluate_kw) -> dict:
    """Frame queries against every gallery frame (``query_frame`` as in ``image_to_video``)."""
    _need(gallery_frames, "frames", "gallery frames")
    return _run(select_query_frames(query_frames, query_frame), gallery_frames, **evaluate_kw)


# ---------------------------------------------------------------------------------------------
# GCR with tracklet profile vectors


def gcr_video(query: FeatureSet, gallery: FeatureSet, preset: str = "mars", statistics_from: str = "all",
              **overrides) -> tuple[FeatureSet, FeatureSet]:
    """GCR-refined copies of the tracklet (or frame-query) feature sets, rows L2-normalised.

    ``query`` may be tracklets (video-to-video) or query frames (image-to-video): each query row is
    one node of the graph. ``overrides`` change fields of the preset (``k1``, ``rounds``, ``pvg`` ...).
    """
    from reidkit.evaluation.rerank_gcr import gcr

    _need(gallery, "tracklets", "gallery")
    if statistics_from not in ("all", "gallery"):
        raise ValueError(f"statistics_from must be 'all' or 'gallery', got {statistics_from!r}")
    if statistics_from == "all":  # the official MARS code: queries appended to the gallery
        d = query.features.shape[1]
        _, both = gcr(np.zeros((0, d), np.float32), np.concatenate([query.features, gallery.features]),
                      np.zeros(0, np.int64), np.concatenate([query.camids, gallery.camids]), preset, **overrides)
        q, g = both[:len(query)], both[len(query):]
    else:
        q, g = gcr(query.features, gallery.features, query.camids, gallery.camids, preset, **overrides)
    meta = {"rerank": "gcr", "gcr_preset": preset, "gcr_statistics_from": statistics_from}
    return (FeatureSet(q, query.pids, query.camids, query.paths, {**query.meta, **meta}),
            FeatureSet(g, gallery.pids, gallery.camids, gallery.paths, {**gallery.meta, **meta}))


def evaluate_video(query: FeatureSet, gallery: FeatureSet, mode: str | None = None, *, rerank: str = "none",
                   query_frame: str = "first", gcr_preset: str = "mars", statistics_from: str = "all",
                   gcr_overrides: dict | None = None, **evaluate_kw) -> dict:
    """One entry point for ``reidkit eval`` on video feature files.

    ``mode`` 'v2v' | 'i2v' | 'i2i' (None: from the files' kinds: tracklets/tracklets -> v2v,
    frames/tracklets -> i2v, frames/frames -> i2i). ``rerank`` 'none' | 'gcr' (tracklet profiles,
    ``gcr_preset`` 'mars' by default). The result has ``mode`` and ``rerank`` added.
    """
    if mode is None:
        mode = {("tracklets", "tracklets"): "v2v", ("frames", "tracklets"): "i2v",
                ("frames", "frames"): "i2i"}.get((kind_of(query), kind_of(gallery)))
        if mode is None:
            raise FeatureFileError(f"cannot tell the video protocol from a {kind_of(query)!r} query and a "
                                   f"{kind_of(gallery)!r} gallery; tracklet files come from `reidkit extract-video`")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if rerank not in ("none", "gcr"):
        raise ValueError(f"video re-ranking must be 'none' or 'gcr', got {rerank!r}")
    if mode == "i2v":
        query, query_frame = select_query_frames(query, query_frame), "all"
    if rerank == "gcr":
        if mode == "i2i":
            raise ValueError("GCR with tracklet profiles needs a tracklet gallery (v2v or i2v)")
        query, gallery = gcr_video(query, gallery, gcr_preset, statistics_from, **(gcr_overrides or {}))
    if mode == "v2v":
        out = video_to_video(query, gallery, **evaluate_kw)
    elif mode == "i2v":
        out = image_to_video(query, gallery, query_frame, **evaluate_kw)
    else:
        out = image_to_image(query, gallery, query_frame, **evaluate_kw)
    out.update(mode=mode, rerank=rerank)
    return out


__all__ = ["QUERY_FRAMES", "MODES", "kind_of", "video_to_video", "select_query_frames", "image_to_video",
           "image_to_image", "gcr_video", "evaluate_video"]
