"""Tracklet feature extraction: tracklets in, a tracklet ``FeatureSet`` (and optionally the frames') out.

Every frame a tracklet uses is decoded exactly once. The frames of all tracklets form one stream
(tracklet after tracklet, each tracklet's distinct sampled frames in temporal order) that goes
through the backbone ``batch_size`` frames at a time; a tracklet is pooled as soon as its last
frame is through, and only (D,) features are held meanwhile. So ``sampler='all'`` on a 900-frame
MARS tracklet costs no more memory than ``batch_size`` frames, and the same pass can also return
the per-frame features that image-to-video queries and image-to-image evaluation need
(``keep_frames=True``), without decoding anything again.

The model is either a ``VideoReIDModel`` (frame features -> its own temporal pooling -> its BNNeck)
or any image model (``model(images) -> (B, D)`` in eval mode), whose frame outputs are pooled with
a parameter-free ``pool`` ('avg' or 'max').

Output (``TrackletFeatures``):
  * ``tracklets``: ``FeatureSet`` (N, D) with pids, camids, paths = each tracklet's first frame, and
    ``meta = {'kind': 'tracklets', 'num_frames': [...] (distinct frames used), 'sampler', 'seq_len',
    'pool', 'missing_frames': [...paths], 'dropped_tracklets': [...first-frame paths]}``;
  * ``frames`` (with ``keep_frames``): ``FeatureSet`` (F, D) of every decoded frame, paths = frame
    paths, ``meta = {'kind': 'frames', 'tracklet_index': [...]}`` (row of its tracklet in ``tracklets``).
Unreadable frames: ``on_error='skip'`` leaves them out of their tracklet's pooling and lists them;
a tracklet left with no frame is dropped from the output and listed. ``'raise'`` stops at the first,
naming the frame and its tracklet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from reidkit.data.images import ImageError, load_rgb
from reidkit.data.records import DatasetError, Tracklet
from reidkit.data.video_loader import DEFAULT_SEQ_LEN, check_tracklets, sample_frames
from reidkit.evaluation.featurefile import FeatureSet
from reidkit.models.temporal import TemporalPool, VideoReIDModel
from reidkit.utils.arrays import l2_normalise


@dataclass
class TrackletFeatures:
    tracklets: FeatureSet
    frames: FeatureSet | None = None


class _FrameStream(Dataset):
    """``[k] -> (img, ok)`` over the flat list of (tracklet, frame path); a failed decode gives ok=False."""

    def __init__(self, paths: list[str], owner: np.ndarray, tracklets: Sequence[Tracklet], transform, on_error: str):
        self.paths, self.owner, self.tracklets = paths, owner, tracklets
        self.transform, self.on_error = transform, on_error

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int):
        try:
            img = self.transform(load_rgb(self.paths[k]))
            return img, True
        except ImageError as e:
            t = self.tracklets[int(self.owner[k])]
            if self.on_error == "raise":
                raise ImageError(f"{e} (frame of tracklet {int(self.owner[k])}: pid {t.pid}, camera {t.camid})") from None
            return None, False  # left out of its tracklet's pooling, and listed


def _collate(batch):
    ok = torch.tensor([b[1] for b in batch], dtype=torch.bool)
    imgs = [b[0] for b in batch if b[1]]
    return (torch.stack(imgs) if imgs else None), ok


def _default_transform(model):
    from reidkit.data.transforms import build_test_transform

    config = getattr(model, "config", None)
    if isinstance(config, dict) and "frame_model" in config:
        config = config["frame_model"]
    size = config.get("img_size") if isinstance(config, dict) else None
    return build_test_transform(tuple(size) if size else (256, 128))


@torch.inference_mode()
def extract_tracklet_features(model: Callable[..., torch.Tensor], tracklets: Sequence[Tracklet], *,
                              transform: Callable | None = None, sampler: str = "all",
                              seq_len: int = DEFAULT_SEQ_LEN, pool: str = "avg", batch_size: int = 64,
                              flip: bool = False, device: str | torch.device = "cpu", num_workers: int = 0,
                              amp_dtype: torch.dtype | None = None, keep_frames: bool = False,
                              normalize: bool = False, on_error: str = "skip", seed: int = 0,
                              progress: bool = True, description: str = "extract tracklets") -> TrackletFeatures:
    """Run ``model`` over the frames of ``tracklets`` and pool them per tracklet (see the module doc).

    ``sampler`` 'all' | 'evenly' | 'random' with ``seq_len`` (``random`` is seeded by ``seed``);
    ``pool`` is used only for image models (a ``VideoReIDModel`` pools with its own ``temporal``).
    ``normalize`` L2-normalises the output rows (tracklets and frames).
    """
    from reidkit.utils.progress import make_progress

    check_tracklets(tracklets)
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    video = isinstance(model, VideoReIDModel)
    pooler = model.temporal if video else TemporalPool(pool)
    if not video and pool == "attention":
        raise ValueError("attention pooling is learned: it needs a VideoReIDModel, not an image model")
    transform = transform or _default_transform(model)
    device = torch.device(device)

    # the frame stream: each tracklet's distinct sampled frames, in order; `expand` rebuilds the clip
    gen = torch.Generator().manual_seed(seed)
    paths: list[str] = []
    owner: list[np.ndarray] = []
    ends = np.empty(len(tracklets), dtype=np.int64)
    expand: list[np.ndarray] = []
    for i, t in enumerate(tracklets):
        idx = sample_frames(len(t.frames), seq_len, sampler, gen)
        uniq, inv = np.unique(idx, return_inverse=True)
        paths += [t.frames[j] for j in uniq.tolist()]
        owner.append(np.full(len(uniq), i, dtype=np.int64))
        ends[i] = len(paths)
        expand.append(inv.reshape(-1))
    owner_all = np.concatenate(owner)
    stream = _FrameStream(paths, owner_all, tracklets, transform, on_error)
    loader = DataLoader(stream, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate, pin_memory=device.type == "cuda")

    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    use_cams = _pass_camids(model, video) and all(t.camid >= 0 for t in tracklets)
    d = None
    pend_f: torch.Tensor | None = None  # (P, D) pre-pool features of the frames not yet pooled
    pend_ok = torch.zeros(0, dtype=torch.bool)
    buf_start, done, next_t = 0, 0, 0
    out_feats, kept = [], []
    frame_rows, frame_ok = [], []
    missing: list[str] = []
    try:
        with make_progress() as bar:
            task = bar.add_task(description, total=len(paths), visible=progress)
            for imgs, ok in loader:
                n = len(ok)
                block = None
                if imgs is not None:
                    kw = {}
                    if use_cams:
                        cams = torch.as_tensor([tracklets[int(o)].camid for o in owner_all[done:done + n]])
                        kw["camids"] = cams[ok].to(device)
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        f = _frames(model, video, imgs.to(device, non_blocking=True), kw)
                        if flip:
                            f = (f + _frames(model, video, imgs.flip(3).to(device, non_blocking=True), kw)) / 2
                    f = f.float().cpu()
                    if d is None:
                        d = f.shape[1]
                        pend_f = torch.zeros(len(pend_ok), d)
                    block = torch.zeros(n, d)
                    block[ok] = f
                elif d is not None:
                    block = torch.zeros(n, d)
                if block is not None:
                    pend_f = torch.cat([pend_f, block])
                pend_ok = torch.cat([pend_ok, ok])
                missing += [paths[done + j] for j in (~ok).nonzero().flatten().tolist()]
                done += n
                bar.advance(task, n)
                first = next_t
                while next_t < len(tracklets) and ends[next_t] <= done:  # tracklets whose frames are all through
                    start = int(ends[next_t - 1]) if next_t else 0
                    lo, hi = start - buf_start, int(ends[next_t]) - buf_start
                    fok = pend_ok[lo:hi]
                    if bool(fok.any()):
                        fr = pend_f[lo:hi]
                        inv = torch.as_tensor(expand[next_t])
                        pooled = pooler(fr[inv].unsqueeze(0).to(device), fok[inv].unsqueeze(0).to(device))
                        out_feats.append(_test(model, video, pooled))
                        kept.append(next_t)
                        if keep_frames:
                            frame_rows.append(_test(model, video, fr[fok].to(device)))
                            frame_ok.append((start + fok.nonzero().flatten()).numpy())
                    next_t += 1
                if next_t > first:  # forget what is pooled
                    cut = int(ends[next_t - 1]) - buf_start
                    pend_ok = pend_ok[cut:]
                    pend_f = None if pend_f is None else pend_f[cut:]
                    buf_start += cut
    finally:
        if was_training and hasattr(model, "train"):
            model.train()

    dropped = [tracklets[i].frames[0] for i in sorted(set(range(len(tracklets))) - set(kept))]
    if not kept:
        raise DatasetError(f"no frame of any of the {len(tracklets)} tracklets could be read "
                           f"(first missing: {missing[0] if missing else '?'})")
    feats = torch.cat(out_feats).numpy()
    if normalize:
        l2_normalise(feats, inplace=True)
    kt = [tracklets[i] for i in kept]
    used = [int(ends[i] - (ends[i - 1] if i else 0)) for i in kept]
    meta = {"kind": "tracklets", "num_frames": used, "sampler": sampler, "seq_len": seq_len,
            "pool": pooler.mode, "flip": flip, "missing_frames": missing, "dropped_tracklets": dropped}
    tfs = FeatureSet(feats, [t.pid for t in kt], [t.camid for t in kt], [t.frames[0] for t in kt], meta)
    ffs = None
    if keep_frames:
        rows_idx = np.concatenate(frame_ok)
        ff = torch.cat(frame_rows).numpy()
        if normalize:
            l2_normalise(ff, inplace=True)
        row_of = {t: r for r, t in enumerate(kept)}
        tidx = [row_of[int(owner_all[k])] for k in rows_idx.tolist()]
        ffs = FeatureSet(ff, [kt[r].pid for r in tidx], [kt[r].camid for r in tidx],
                         [paths[k] for k in rows_idx.tolist()], {"kind": "frames", "tracklet_index": tidx})
    return TrackletFeatures(tfs, ffs)


def _pass_camids(model, video: bool) -> bool:
    if video:
        return getattr(model.frame_model.spec, "sie_cameras", 0) > 0
    from reidkit.evaluation.extract import _takes_camids

    return _takes_camids(model)


def _test(model, video: bool, feats: torch.Tensor) -> torch.Tensor:
    """Pooled or single-frame pre-BN features -> the model's test feature (a video model's BNNeck)."""
    return (model.test_feature(feats) if video else feats).float().cpu()


def _frames(model, video: bool, imgs: torch.Tensor, kw: dict) -> torch.Tensor:
    """Per-frame features before pooling: pre-BN for a video model, the model's output otherwise."""
    if video:
        return model.frame_features(imgs, kw.get("camids"))
    out = model(imgs, **kw)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model returned {type(out).__name__}; extraction needs a (B, D) tensor")
    return out.flatten(1) if out.ndim != 2 else out


__all__ = ["TrackletFeatures", "extract_tracklet_features"]
