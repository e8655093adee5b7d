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

GPU speed (``decode='device'``, the default on CUDA): DataLoader workers only read file bytes in
parallel; JPEGs are decoded batched on the device (nvjpeg), resized and normalised there; other
formats and files nvjpeg refuses fall back to PIL (``device_augment.read_encoded``). ``compile=True``
runs the model through ``torch.compile`` (the last batch is padded, so one graph serves all).

Beyond one GPU: ``extract_to_file`` under ``torchrun`` gives each rank a contiguous shard of the
images; every rank writes its part, and rank 0 merges the parts (``merge_feature_parts``) into one
file in the original order.
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
from reidkit.utils.arrays import l2_normalise
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
                     description: str = "extract", decode: str = "pil", compile: bool = False) -> FeatureSet:
    """Run ``model`` over the images of ``source`` and return their features.

    ``transform`` maps a PIL RGB image to a (3, H, W) tensor (default: the test transform at the
    model's ``config['img_size']``, else 256x128). ``flip=True`` averages the features of the image
    and its horizontal mirror. ``amp_dtype`` ('bf16', 'fp16' or a torch dtype) runs the model under
    autocast; outputs are float32. ``normalize`` L2-normalises the rows.
    ``decode``: 'pil' (workers decode and transform), 'device' (workers read bytes, the device
    decodes, resizes and normalises; needs a Resize + ToTensor + Normalize transform) or 'auto'
    ('device' on CUDA). ``compile``: ``torch.compile`` the model for this call.
    Returns a ``FeatureSet`` with features (N, D) float32, pids, camids and paths in source order.
    """
    records = as_records(source)
    transform = transform or _default_transform(model)
    if decode not in ("pil", "device", "auto"):
        raise ValueError(f"decode must be pil, device or auto, got {decode!r}")
    if decode == "auto":
        decode = "device" if torch.device(device).type == "cuda" else "pil"
    if compile:
        model = _Compiled(model, batch_size)
    if decode == "device":
        return _extract_on_device(model, records, transform, batch_size, flip, torch.device(device), num_workers,
                                  amp_dtype, normalize, on_error, progress, description)
    dataset = ImageDataset(records, transform, on_error=on_error)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=str(device).startswith("cuda"), persistent_workers=False)
    device = torch.device(device)
    with _ModelRun(model, len(dataset), progress, description) as (run, advance):
        chunks: list[np.ndarray] = []
        for imgs, _, camids, _ in loader:
            chunks.append(run(imgs.to(device, non_blocking=True), camids, flip, amp_dtype))
            advance(len(imgs))
    skipped = set(dataset.skipped_paths)
    features = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    if skipped:  # the loader served substitutes for these rows; drop them
        features = features[np.array([r.path not in skipped for r in records])]
    return _feature_set(records, features, skipped, flip, normalize)


def _feature_set(records: Sequence[Record], features: np.ndarray, skipped: set[str], flip: bool,
                 normalize: bool) -> FeatureSet:
    """``features`` (rows of the records not ``skipped``, in order) with their labels and paths."""
    if normalize:
        l2_normalise(features, inplace=True)
    kept = [r for r in records if r.path not in skipped] if skipped else records
    return FeatureSet(features, np.array([r.pid for r in kept], dtype=np.int64),
                      np.array([r.camid for r in kept], dtype=np.int64), [r.path for r in kept],
                      meta={"skipped": sorted(skipped), "flip": flip})


class _ModelRun:
    """Context: eval mode (restored after), camids when the model takes them, autocast, float32 numpy out."""

    def __init__(self, model, total: int, progress: bool, description: str):
        self.model, self.total, self.progress, self.description = model, total, progress, description

    def __enter__(self):
        model = self.model
        self.was_training = getattr(model, "training", False)
        if hasattr(model, "eval"):
            model.eval()
        use_camids = _takes_camids(getattr(model, "_orig_mod", model))
        # imported here, not at the top: reidkit.models pulls in timm and torchvision (~8 CPU-s on a loaded
        # 2-core machine), which as_records' users (the colour-histogram baseline) never need
        from reidkit.models.inference import amp_dtype
        self.bar = make_progress().__enter__()
        task = self.bar.add_task(self.description, total=self.total, visible=self.progress)

        def run(imgs: torch.Tensor, camids: torch.Tensor, flip: bool, amp) -> np.ndarray:
            dtype = amp_dtype(amp)   # 'bf16' / 'fp16' / a dtype / None
            kwargs = {}
            if use_camids and bool((camids >= 0).all()):
                kwargs["camids"] = camids.to(imgs.device)
            with torch.autocast(imgs.device.type, dtype=dtype, enabled=dtype is not None):
                feats = _forward(model, imgs, kwargs)
                if flip:
                    feats = (feats + _forward(model, imgs.flip(3), kwargs)) / 2
            return feats.float().cpu().numpy()

        return run, lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)
        if self.was_training and hasattr(self.model, "train"):
            self.model.train()
        return False


class _Compiled:
    """``torch.compile``d forward with the batch padded to ``batch_size``: one static graph for all."""

    def __init__(self, model, batch_size: int):
        self._orig_mod, self.batch_size = model, batch_size
        self.fn = torch.compile(model, dynamic=False)

    def __call__(self, imgs: torch.Tensor, **kwargs) -> torch.Tensor:
        n = len(imgs)
        if n < self.batch_size:
            imgs = torch.cat([imgs, imgs.new_zeros((self.batch_size - n, *imgs.shape[1:]))])
            kwargs = {k: torch.cat([v, v.new_zeros(self.batch_size - n)]) for k, v in kwargs.items()}
        return self.fn(imgs, **kwargs)[:n]

    @property
    def training(self) -> bool:
        return getattr(self._orig_mod, "training", False)

    def eval(self):
        self._orig_mod.eval()
        return self

    def train(self, mode: bool = True):
        self._orig_mod.train(mode)
        return self


# --------------------------------------------------------------------------- device decode path

def _collate_list(batch):
    return batch


def _test_recipe(transform) -> tuple[tuple[int, int], str, torch.Tensor, torch.Tensor]:
    """(size, interpolation, mean, std) of a Resize + ToTensor + Normalize transform."""
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", []))
    kinds = [type(s) for s in steps]
    if kinds != [T.Resize, T.ToTensor, T.Normalize]:
        raise ValueError("decode='device' needs a Resize + ToTensor + Normalize test transform "
                         f"(build_test_transform); got {[k.__name__ for k in kinds] or type(transform).__name__}")
    resize, _, norm = steps
    size = tuple(resize.size) if not isinstance(resize.size, int) else (resize.size, resize.size)
    return (size, resize.interpolation.value, torch.tensor(norm.mean).view(1, -1, 1, 1),
            torch.tensor(norm.std).view(1, -1, 1, 1))


def _extract_on_device(model, records, transform, batch_size, flip, device, num_workers, amp, normalize,
                       on_error, progress, description) -> FeatureSet:
    from reidkit.data.device_augment import EncodedFiles, decode_read, resize_images
    from reidkit.data.images import ImageError

    size, interp, mean, std = _test_recipe(transform)
    mean, std = mean.to(device), std.to(device)
    loader = DataLoader(EncodedFiles([r.path for r in records]), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate_list,
                        prefetch_factor=4 if num_workers else None)
    skipped: set[str] = set()
    chunks: list[np.ndarray] = []
    with _ModelRun(model, len(records), progress, description) as (run, advance):
        for batch in loader:
            images, problems = decode_read([records[item[0]].path for item in batch], [item[1:] for item in batch],
                                           device)
            for (i, *_), problem in zip(batch, problems):
                if problem is not None:
                    if on_error == "raise":
                        raise ImageError(problem)
                    skipped.add(records[i].path)
            ok = [j for j in range(len(batch)) if images[j] is not None]
            if ok:
                x = resize_images([images[j] for j in ok], size, interp)
                x = x.float().div_(255).sub_(mean).div_(std).contiguous(memory_format=torch.channels_last)
                camids = torch.tensor([records[batch[j][0]].camid for j in ok])
                chunks.append(run(x, camids, flip, amp))
            advance(len(batch))
    features = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    return _feature_set(records, features, skipped, flip, normalize)


# --------------------------------------------------------------------------- torchrun shards

def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous shard ``[lo, hi)`` of ``n`` items for ``rank`` of ``world`` (sizes differ by <= 1)."""
    return n * rank // world, n * (rank + 1) // world


def part_path(out: Path, rank: int, world: int) -> Path:
    return out.with_name(f"{out.stem}.part{rank:04d}-of-{world:04d}{out.suffix}")


def merge_feature_parts(parts: Sequence[str | os.PathLike], out: str | os.PathLike,
                        meta: dict | None = None) -> FeatureSet:
    """Concatenate feature files in the given order into ``out`` (skipped lists joined)."""
    from reidkit.evaluation.featurefile import load_features, save_features

    sets = [load_features(p) for p in parts]
    dims = {fs.features.shape[1] for fs in sets if len(fs)}
    if len(dims) > 1:
        raise DatasetError(f"{out}: parts have different feature dimensions {sorted(dims)}")
    rows = [fs for fs in sets if len(fs)]
    features = np.concatenate([fs.features for fs in rows]) if rows else sets[0].features
    merged = FeatureSet(features, np.concatenate([fs.pids for fs in sets]),
                        np.concatenate([fs.camids for fs in sets]),
                        [p for fs in sets for p in (fs.paths or [])] if all(fs.paths is not None for fs in sets)
                        else None,
                        meta={**sets[0].meta, **(meta or {}),
                              "skipped": sorted(p for fs in sets for p in fs.meta.get("skipped", [])),
                              "parts": len(sets)})
    save_features(merged, out)
    return merged


def extract_to_file(model, source: Source, out: str | os.PathLike, meta: dict | None = None,
                    **kwargs) -> FeatureSet:
    """``extract_features`` + save, sharded when run under ``torchrun`` (or an initialised process group).

    Each rank extracts ``shard_bounds`` of the records and writes ``<out>.partRRRR-of-WWWW``; after a
    barrier rank 0 merges the parts into ``out`` (original order) and removes them. Returns the
    merged set on rank 0 and the rank's own part elsewhere.
    """
    import torch.distributed as dist

    from reidkit.evaluation.featurefile import save_features

    out = Path(out)
    records = as_records(source)
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world == 1:
        fs = extract_features(model, records, **kwargs)
        fs.meta.update(meta or {})
        save_features(fs, out)
        return fs
    rank = dist.get_rank()
    lo, hi = shard_bounds(len(records), rank, world)
    fs = extract_features(model, records[lo:hi], **kwargs) if hi > lo else \
        FeatureSet(np.zeros((0, 0), np.float32), [], [], [], meta={"skipped": []})
    fs.meta.update(meta or {})
    save_features(fs, part_path(out, rank, world))
    dist.barrier()
    if rank == 0:
        parts = [part_path(out, r, world) for r in range(world)]
        fs = merge_feature_parts(parts, out, meta)
        for p in parts:
            p.unlink()
    dist.barrier()
    return fs


def init_torchrun(device: str) -> tuple[int, int, str]:
    """Join the ``torchrun`` process group when its environment is set: ``(rank, world, device)``.

    NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``), gloo on CPU. Outside torchrun: ``(0, 1, device)``.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        import atexit

        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        atexit.register(dist.destroy_process_group)
    return dist.get_rank(), dist.get_world_size(), device


def _forward(model, imgs: torch.Tensor, kwargs: dict) -> torch.Tensor:
    out = model(imgs, **kwargs)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model returned {type(out).__name__}; extraction needs a (B, D) tensor "
                        f"from the model in eval mode")
    return out.flatten(1) if out.ndim != 2 else out  # (B, D, 1, 1) from a pooled CNN is fine
