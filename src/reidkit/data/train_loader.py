"""The training DataLoader: PK batches, repeatable augmentation, and a decoded-image cache.

Three things make it fast and exact:

* **Per-sample seeds.** The PK sampler hands out ``(index, seed)`` pairs; ``SeededSamples`` runs
  the transform under that seed. An augmentation is a pure function of ``(seed, epoch, step,
  slot)``, so a resumed run and an uninterrupted one see the same pixels, with any worker count.
* **Decoded-image cache** (``cache='memory'``, or ``'auto'`` when it fits ``cache_max_gb``):
  every training image is decoded and resized once (the resize is deterministic, see
  ``transforms.split_resize``) into one uint8 array (N, H, W, 3). Forked workers share it
  copy-on-write; per sample only flip / pad+crop / erasing remain, a fraction of a millisecond.
* Workers are persistent, batches are pinned on GPU, and the loader has its own generator so
  it never consumes the global RNG (which would make a resumed run differ).
"""
from __future__ import annotations

import os
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from reidkit.data.image_dataset import ImageDataset
from reidkit.data.records import Record
from reidkit.data.samplers import PKSampler
from reidkit.data.transforms import split_resize
from reidkit.utils.progress import make_progress

CacheMode = Literal["auto", "memory", "none"]


class SeededSamples(Dataset):
    """``dataset[(index, seed)]`` = ``dataset[index]`` with torch's CPU RNG seeded by ``seed`` for that
    sample only (the caller's RNG state is restored, so the main process is not disturbed)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item):
        if not isinstance(item, tuple):
            return self.dataset[item]
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only, the one the augmentation draws from (same draws as torch.manual_seed):
            # torch.manual_seed also queues lazy CUDA/XPU/MPS seeding, 1-20 ms per call on a CUDA build,
            # and would reseed the CUDA RNG, which fork_rng(devices=[]) does not restore
            torch.default_generator.manual_seed(int(seed))
            return self.dataset[index]


class _ToArray:
    def __init__(self, resize: Callable):
        self.resize = resize

    def __call__(self, img: Image.Image) -> np.ndarray:
        return np.asarray(self.resize(img), dtype=np.uint8)


def _collate_arrays(batch):
    return batch


class CachedImages(Dataset):
    """Training images decoded and resized once into memory: ``[i] -> (augment(img), pid, camid, i)``.

    Corrupt files are handled by ``ImageDataset`` while filling the cache (a substitute image of
    the same identity, counted in ``num_skipped``); labels are those of the image actually stored.
    ``decode_device`` (CUDA: nvjpeg): workers only read the files; JPEGs are decoded in batches and
    resized on that device (``device_augment.decode_read``, PIL for other formats and refused files),
    with the same skipping and substitutes. Its pixels are the device decoder's and ``F.interpolate``'s,
    a few grey levels at most from PIL's where a resize is needed, so the CPU default stays PIL.
    """

    def __init__(self, records: Sequence[Record], resize: Callable, augment: Callable, num_workers: int = 0,
                 on_error: str = "skip", progress: bool = True, decode_device: torch.device | str | None = None):
        source = ImageDataset(records, _ToArray(resize), on_error=on_error)
        size = _fixed_size(resize)
        with make_progress() as bar:
            task = bar.add_task("decode images into memory", total=len(records), visible=progress)
            if decode_device is not None and size is not None:
                self._fill_on_device(source, size, resize.interpolation.value, torch.device(decode_device),
                                     num_workers, lambda n: bar.advance(task, n))
            else:
                self._fill(source, num_workers, lambda n: bar.advance(task, n))
        self.num_skipped, self.skipped_paths = source.num_skipped, source.skipped_paths
        self.augment = augment

    def _fill(self, source: ImageDataset, num_workers: int, advance: Callable[[int], None]) -> None:
        n = len(source)
        first = source[0][0]
        self.images = np.empty((n, *first.shape), dtype=np.uint8)
        self.pids = np.empty(n, dtype=np.int64)
        self.camids = np.empty(n, dtype=np.int64)
        loader = DataLoader(source, batch_size=64, num_workers=num_workers, collate_fn=_collate_arrays,
                            generator=torch.Generator())  # own generator: leave the global RNG alone
        for batch in loader:
            for arr, pid, camid, i in batch:
                self.images[i], self.pids[i], self.camids[i] = arr, pid, camid
            advance(len(batch))

    def _fill_on_device(self, source: ImageDataset, size: tuple[int, int], interpolation: str,
                        device: torch.device, num_workers: int, advance: Callable[[int], None]) -> None:
        from reidkit.data.device_augment import EncodedFiles, decode_read, resize_images

        records = source.records
        self.images = np.empty((len(records), *size, 3), dtype=np.uint8)
        self.pids = np.array([r.pid for r in records], dtype=np.int64)
        self.camids = np.array([r.camid for r in records], dtype=np.int64)
        loader = DataLoader(EncodedFiles([r.path for r in records]), batch_size=256, num_workers=num_workers,
                            collate_fn=_collate_arrays, generator=torch.Generator())
        bad: list[int] = []
        for batch in loader:
            index = [item[0] for item in batch]
            images, problems = decode_read([records[i].path for i in index], [item[1:] for item in batch], device)
            for i, problem in zip(index, problems):
                if problem is not None:
                    source.mark_bad(i, problem)   # raises ImageError under on_error='raise'
                    bad.append(i)
            ok = [j for j, img in enumerate(images) if img is not None]
            if ok:
                x = resize_images([images[j] for j in ok], size, interpolation)
                self.images[[index[j] for j in ok]] = x.permute(0, 2, 3, 1).cpu().numpy()
            advance(len(batch))
        for i in bad:   # every bad file is known now: the substitute is the first good candidate
            j = source.first_good(i)
            self.images[i], self.pids[i], self.camids[i] = self.images[j], self.pids[j], self.camids[j]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        img = Image.fromarray(self.images[index])
        return self.augment(img), int(self.pids[index]), int(self.camids[index]), index


def _fixed_size(resize: Callable) -> tuple[int, int] | None:
    """(H, W) of a ``T.Resize`` to a fixed size (what the device fill can reproduce), else None."""
    size = getattr(resize, "size", None)
    if isinstance(resize, T.Resize) and isinstance(size, (tuple, list)) and len(size) == 2 \
            and resize.interpolation.value in ("bilinear", "bicubic", "nearest"):
        return int(size[0]), int(size[1])
    return None


def decode_device(decode: str, device: torch.device) -> torch.device | None:
    """The device that fills the memory cache for the recipe's ``data.decode``: None (PIL in workers) for
    'pil', and for 'auto' off CUDA; the training device for 'device', and for 'auto' on CUDA."""
    if decode not in ("auto", "pil", "device"):
        raise ValueError(f"data.decode={decode!r}: expected auto, pil or device")
    if decode == "pil" or (decode == "auto" and device.type != "cuda"):
        return None
    return device


def cache_bytes(num_images: int, size: tuple[int, int]) -> int:
    return num_images * size[0] * size[1] * 3


def default_num_workers() -> int:
    """Leave one core to the training process; at most 8 (more rarely helps a PK loader)."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def build_train_loader(records: Sequence[Record], transform: Callable, *, batch_size: int, num_instances: int,
                       seed: int, size: tuple[int, int], num_workers: int = -1, cache: CacheMode = "auto",
                       cache_max_gb: float = 4.0, pin_memory: bool = False, on_error: str = "skip",
                       rank: int = 0, world_size: int = 1, progress: bool = True,
                       collate_fn: Callable | None = None,
                       decode_device: torch.device | str | None = None) -> tuple[DataLoader, PKSampler, Dataset]:
    """A loader of ``(images (B, 3, H, W), pids (B,), camids (B,), indices (B,))`` PK batches.

    ``batch_size`` is per process (P = batch_size / num_instances identities each).
    Returns ``(loader, sampler, dataset)``; call ``sampler.set_epoch(e)`` before each epoch.
    ``collate_fn``: for transforms that do not return tensors (``device_augment.worker_transform``).
    ``decode_device``: fill the memory cache with that device's decoder (nvjpeg on CUDA; see ``CachedImages``).
    """
    if batch_size % num_instances:
        raise ValueError(f"batch size {batch_size} is not a multiple of num_instances {num_instances}")
    workers = default_num_workers() if num_workers < 0 else num_workers
    use_cache = cache == "memory" or (cache == "auto" and cache_bytes(len(records), size) <= cache_max_gb * 2**30)
    resize, augment = split_resize(transform) if use_cache else (None, transform)
    if use_cache and resize is not None:
        dataset: Dataset = CachedImages(records, resize, augment, workers, on_error, progress and rank == 0,
                                        decode_device)
    else:
        dataset = ImageDataset(records, transform, on_error=on_error)
    sampler = PKSampler([r.pid for r in records], batch_size // num_instances, num_instances, seed=seed,
                        rank=rank, world_size=world_size, with_seeds=True)
    loader = DataLoader(SeededSamples(dataset), batch_sampler=sampler, num_workers=workers,
                        pin_memory=pin_memory, persistent_workers=workers > 0, collate_fn=collate_fn,
                        prefetch_factor=4 if workers > 0 else None,
                        generator=torch.Generator().manual_seed(seed))
    return loader, sampler, dataset
