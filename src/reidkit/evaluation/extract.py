"""Model-agnostic batched feature extraction: images in, a ``FeatureSet`` out.

Works on any ``torch.nn.Module`` (or callable) that maps a (B, 3, H, W) batch to (B, D) features in
eval mode -- a reidkit model, a timm model, a torchvision ResNet with its fc removed. Sources:
  * a list of ``Record``s (a dataset split from ``reidkit.data.datasets.load_dataset``);
  * a folder of crops (scanned recursively, sorted): pid and camera are parsed from Market-style
    names (``0002_c1s1_000451_03.jpg``) where they match, else -1 -- your own images work as is;
  * a list of image paths (labels -1).

Unreadable images (corrupt, truncated, not images) are skipped with ``on_error='skip'`` (default):
their rows are dropped from the output and their paths listed in ``fs.meta['skipped']``, so a
feature never belongs to another image. ``on_error='raise'`` stops at the first one, naming it.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from reidkit.data.datasets.common import MARKET_NAME
from reidkit.data.datasets.unlabelled import scan_images
from reidkit.data.image_dataset import ImageDataset
from reidkit.data.records import DatasetError, Record
from reidkit.evaluation.featurefile import FeatureSet
from reidkit.utils.progress import make_progress

Source = Sequence[Record] | Sequence[str] | str | os.PathLike


def records_from_folder(folder: str | os.PathLike) -> list[Record]:
    """Every image under ``folder`` (recursive, sorted) as a record; labels from Market-style names or -1."""
    records = []
    for path in scan_images(folder):
        parsed = MARKET_NAME.parse(os.path.basename(path))
        pid, camid = parsed if parsed is not None else (-1, -1)
        records.append(Record(path, pid, max(camid, -1)))
    if not records:
        raise DatasetError(f"{folder}: no image files found")
    return records


def as_records(source: Source) -> list[Record]:
    """Normalise any accepted source to a list of records."""
    if isinstance(source, (str, os.PathLike)):
        if not Path(source).is_dir():
            raise DatasetError(f"{source}: not a folder of images")
        return records_from_folder(source)
    items = list(source)
    if not items:
        raise DatasetError("nothing to extract: the record list is empty")
    if isinstance(items[0], Record):
        return items
    return [Record(os.fspath(p), -1, -1) for p in items]


def _default_transform(model) -> Callable:
    from reidkit.data.transforms import build_test_transform

    config = getattr(model, "config", None)
    size = config.get("img_size") if isinstance(config, dict) else None
    return build_test_transform(tuple(size) if size else (256, 128))


def _takes_camids(model) -> bool:
    """Models with side information (SIE camera embeddings) accept ``camids=``; pass them when known."""
    try:
        return "camids" in inspect.signature(model.forward if hasattr(model, "forward") else model).parameters
    except (TypeError, ValueError):
        return False


@torch.inference_mode()
def extract_features(model: Callable[..., torch.Tensor], source: Source, transform: Callable | None = None,
                     batch_size: int = 64, flip: bool = False, device: str | torch.device = "cpu",
                     num_workers: int = 0, amp_dtype: torch.dtype | str | None = None,
                     normalize: bool = False, on_error: str = "skip", progress: bool = True,
                     description: str = "extract") -> FeatureSet:
    """Run ``model`` over the images of ``source`` and return their features.

    ``transform`` maps a PIL RGB image to a (3, H, W) tensor (default: the test transform at the
    model's ``config['img_size']``, else 256x128). ``flip=True`` averages the features of the image
    and its horizontal mirror. ``amp_dtype`` ('bf16', 'fp16' or a torch dtype) runs the model under
    autocast; outputs are float32. ``normalize`` L2-normalises the rows.
    Returns a ``FeatureSet`` with features (N, D) float32, pids, camids and paths in source order.
    """
    records = as_records(source)
    transform = transform or _default_transform(model)
    dataset = ImageDataset(records, transform, on_error=on_error)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=str(device).startswith("cuda"), persistent_workers=False)
    device = torch.device(device)
    dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
             "float16": torch.float16}.get(amp_dtype, amp_dtype) if isinstance(amp_dtype, str) else amp_dtype
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    use_camids = _takes_camids(model)
    chunks: list[np.ndarray] = []
    try:
        with make_progress() as bar:
            task = bar.add_task(description, total=len(dataset), visible=progress)
            for imgs, _, camids, _ in loader:
                imgs = imgs.to(device, non_blocking=True)
                kwargs = {}
                if use_camids and bool((camids >= 0).all()):
                    kwargs["camids"] = camids.to(device)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    feats = _forward(model, imgs, kwargs)
                    if flip:
                        feats = (feats + _forward(model, imgs.flip(3), kwargs)) / 2
                chunks.append(feats.float().cpu().numpy())
                bar.advance(task, len(imgs))
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    features = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    if normalize:
        features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    pids = np.array([r.pid for r in records], dtype=np.int64)
    camids = np.array([r.camid for r in records], dtype=np.int64)
    paths = [r.path for r in records]
    skipped = sorted(set(dataset.skipped_paths))
    if skipped:  # the loader served substitutes for these rows; drop them
        bad = set(skipped)
        keep = np.array([p not in bad for p in paths])
        features, pids, camids = features[keep], pids[keep], camids[keep]
        paths = [p for p, k in zip(paths, keep) if k]
    return FeatureSet(features, pids, camids, paths, meta={"skipped": skipped, "flip": flip})


def _forward(model, imgs: torch.Tensor, kwargs: dict) -> torch.Tensor:
    out = model(imgs, **kwargs)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model returned {type(out).__name__}; extraction needs a (B, D) tensor "
                        f"from the model in eval mode")
    return out.flatten(1) if out.ndim != 2 else out  # (B, D, 1, 1) from a pooled CNN is fine
