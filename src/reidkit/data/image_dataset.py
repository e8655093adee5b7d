"""Torch datasets over records: decode with ``load_rgb``, apply a transform, survive bad files.

``ImageDataset`` serves labelled records as ``(img, pid, camid, index)``; ``UnlabelledImageDataset``
serves a pre-training pool as ``(img, index)``. With ``on_error='skip'`` a corrupt or missing image
never stops a run: it is logged, counted, and a deterministic substitute is served instead
(the next image of the same identity, else the next image in order). The bad indices are kept in a
shared-memory mask, so ``num_skipped`` / ``skipped_paths`` also see failures from DataLoader workers.
"""
from __future__ import annotations

import itertools
import logging
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from reidkit.data.images import ImageError, load_rgb
from reidkit.data.records import DatasetError, Record

log = logging.getLogger("reidkit.data")

# Stop looking for a substitute after this many consecutive bad files: the data is broken, not noisy.
MAX_SUBSTITUTE_TRIES = 64


class _BadImageTracker:
    """Which indices failed to decode, shared across DataLoader worker processes."""

    def __init__(self, n: int, on_error: str):
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self.on_error = on_error
        self.bad = torch.zeros(max(n, 1), dtype=torch.bool).share_memory_()

    def num_bad(self) -> int:
        return int(self.bad.sum())

    def bad_indices(self) -> list[int]:
        return self.bad.nonzero().flatten().tolist()


class _PathTable:
    """Millions of paths as one UTF-8 byte buffer + offsets.

    A Python list of str would be copied page by page into every forked DataLoader worker as
    reference counts change ("copy-on-read"); two numpy arrays are never touched that way.
    """

    def __init__(self, paths: Sequence[str]):
        encoded = [os.fsencode(p) for p in paths]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return os.fsdecode(self.buffer[self.offsets[i]:self.offsets[i + 1]].tobytes())


class ImageDataset(Dataset):
    """Labelled images: ``dataset[i] -> (img, pid, camid, i)``.

    ``img`` is ``transform(PIL RGB image)`` (the PIL image itself when ``transform`` is None).
    ``on_error='raise'`` raises ``ImageError`` naming the file; ``'skip'`` serves a substitute and
    returns *its* pid and camid (so label and image always agree) with the requested index ``i``.
    """

    def __init__(self, records: Sequence[Record], transform: Callable | None = None,
                 on_error: str = "skip"):
        self.records = list(records)
        self.transform = transform
        self._tracker = _BadImageTracker(len(self.records), on_error)
        pids = np.fromiter((r.pid for r in self.records), dtype=np.int64, count=len(self.records))
        # For substitutes: indices grouped by pid, in record order.
        order = np.argsort(pids, kind="stable")
        self._pid_order, self._pid_sorted = order, pids[order]
        self._pids = pids

    def __len__(self) -> int:
        return len(self.records)

    @property
    def on_error(self) -> str:
        return self._tracker.on_error

    @property
    def num_skipped(self) -> int:
        """Number of distinct images that failed to load so far (all workers)."""
        return self._tracker.num_bad()

    @property
    def skipped_paths(self) -> list[str]:
        return [self.records[i].path for i in self._tracker.bad_indices()]

    def __getitem__(self, index: int) -> tuple[Any, int, int, int]:
        for j in self._candidates(index):
            rec = self.records[j]
            img = _try_load(rec.path, j, self._tracker)
            if img is not None:
                if self.transform is not None:
                    img = self.transform(img)
                return img, rec.pid, rec.camid, index
        raise DatasetError(f"{self.records[index].path}: could not load it nor any of "
                           f"{MAX_SUBSTITUTE_TRIES} substitutes; the dataset looks broken")

    def mark_bad(self, index: int, problem: str) -> None:
        """Record that image ``index`` failed to decode outside ``__getitem__`` (e.g. on the device):
        ``ImageError(problem)`` under ``on_error='raise'``, else logged and counted like a failure here."""
        _mark_bad(self._tracker, index, ImageError(problem))

    def first_good(self, index: int) -> int:
        """The index ``__getitem__`` serves for ``index`` once every bad image is marked: ``index`` itself,
        or its substitute (the next image of the same identity, else the next image in order)."""
        for j in self._candidates(index):
            return j
        raise DatasetError(f"{self.records[index].path}: could not load it nor any of "
                           f"{MAX_SUBSTITUTE_TRIES} substitutes; the dataset looks broken")

    def _candidates(self, index: int):
        """``index``, then the same pid's other images after it (cyclic), then every image after it."""
        if not self._tracker.bad[index]:
            yield index
        n = len(self.records)
        pid = self._pids[index]
        lo = int(np.searchsorted(self._pid_sorted, pid, side="left"))
        hi = int(np.searchsorted(self._pid_sorted, pid, side="right"))
        same = self._pid_order[lo:hi]
        start = int(np.searchsorted(same, index, side="right"))
        others = itertools.chain(same[start:].tolist(), same[:start].tolist(),
                                 ((index + k) % n for k in range(1, n)))
        tries = 0
        for j in others:
            if j == index or self._tracker.bad[j]:
                continue
            tries += 1
            if tries > MAX_SUBSTITUTE_TRIES:
                return
            yield j


class UnlabelledImageDataset(Dataset):
    """A pre-training pool: ``dataset[i] -> (img, i)`` for paths (or records) in a fixed order.

    Paths are stored compactly (see ``_PathTable``) so pools of millions of images stay light in
    DataLoader workers. ``on_error='skip'`` serves the next decodable image in order instead.
    """

    def __init__(self, paths: Sequence[str] | Sequence[Record], transform: Callable | None = None,
                 on_error: str = "skip"):
        self.paths = _PathTable([p.path if isinstance(p, Record) else os.fspath(p) for p in paths])
        self.transform = transform
        self._tracker = _BadImageTracker(len(self.paths), on_error)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_skipped(self) -> int:
        return self._tracker.num_bad()

    @property
    def skipped_paths(self) -> list[str]:
        return [self.paths[i] for i in self._tracker.bad_indices()]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        n, tries = len(self.paths), 0
        for k in range(n):
            j = (index + k) % n
            if k and self._tracker.bad[j]:
                continue
            img = _try_load(self.paths[j], j, self._tracker)
            if img is not None:
                return (self.transform(img) if self.transform is not None else img), index
            tries += 1
            if tries > MAX_SUBSTITUTE_TRIES:
                break
        raise DatasetError(f"{self.paths[index]}: could not load it nor the images after it; "
                           f"the pool looks broken")


def _try_load(path: str, index: int, tracker: _BadImageTracker):
    try:
        return load_rgb(path)
    except ImageError as e:
        _mark_bad(tracker, index, e)
        return None


def _mark_bad(tracker: _BadImageTracker, index: int, error: ImageError) -> None:
    if tracker.on_error == "raise":
        raise error
    if not tracker.bad[index]:
        tracker.bad[index] = True
        log.warning("skipping unreadable image: %s", error)
