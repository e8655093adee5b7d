"""Merge several datasets into one training set, with pid and camera offsets.

Each dataset's train pids (already ``0..N_k-1``) are shifted past the datasets before it, and its
camera ids past their cameras, so identities and cameras never collide (SIE camera embeddings
need distinct camera ids). Query and gallery come from one chosen dataset: they keep its pids and
get its camera offset, matching the ids the model saw in training.

The official TransReID-SSL target set ``mm`` (``load_mm``): MSMT17 ``list_train`` (1,041 ids,
labels 0..1040, cameras 0..14) then Market-1501 ``bounding_box_train`` (751 ids -> 1041..1791,
cameras +15), tested on Market-1501 query / gallery.
"""
from __future__ import annotations

import os
from typing import Sequence

from reidkit.data.records import DatasetError, ReIDDataset, Record, relabel

from . import market1501, msmt17
from .common import ParsedDataset


def _num_cameras(ds: ReIDDataset) -> int:
    return 1 + max((r.camid for s in (ds.train, ds.query, ds.gallery) for r in s), default=-1)


def merge_datasets(datasets: Sequence[ReIDDataset], *, test_from: int = -1,
                   name: str | None = None) -> ParsedDataset:
    """One dataset: every train split, offset; query/gallery of ``datasets[test_from]``."""
    if not datasets:
        raise DatasetError("merge: no datasets given")
    if not -len(datasets) <= test_from < len(datasets):
        raise DatasetError(f"merge: test_from={test_from} but only {len(datasets)} dataset(s)")
    test_from %= len(datasets)
    train: list[Record] = []
    pid_offset = cam_offset = 0
    notes, problems, errors = [], [], []
    test_cam_offset = 0
    for k, ds in enumerate(datasets):
        part = relabel(ds.train)  # no-op for readers' output; guards hand-made datasets
        num_ids = len({r.pid for r in part})
        train += [Record(r.path, r.pid + pid_offset, r.camid + cam_offset if r.camid >= 0 else -1)
                  for r in part]
        notes.append(f"{ds.name}: {num_ids} train ids -> pids {pid_offset}..{pid_offset + num_ids - 1}, "
                     f"cameras +{cam_offset}")
        if k == test_from:
            test_cam_offset = cam_offset
        problems += [f"{ds.name}: {p}" for p in ds.problems]
        errors += [f"{ds.name}: {p}" for p in getattr(ds, "errors", [])]
        notes += [f"{ds.name}: {n}" for n in getattr(ds, "notes", [])]
        pid_offset += num_ids
        cam_offset += _num_cameras(ds)
    test = datasets[test_from]

    def shift(records: list[Record]) -> list[Record]:
        return [Record(r.path, r.pid, r.camid + test_cam_offset if r.camid >= 0 else -1) for r in records]

    notes.append(f"query/gallery from {test.name} (cameras +{test_cam_offset})")
    return ParsedDataset(name=name or "+".join(d.name for d in datasets), train=train,
                         query=shift(test.query), gallery=shift(test.gallery), problems=problems,
                         root=";".join(getattr(d, "root", "") for d in datasets), errors=errors, notes=notes)


def load_mm(root: str | os.PathLike, *, market_root: str | os.PathLike | None = None,
            msmt_root: str | os.PathLike | None = None, combine_val: bool = False,
            strict: bool = True) -> ParsedDataset:
    """The official ``mm`` set. ``root`` holds both datasets (or give ``market_root`` / ``msmt_root``)."""
    msmt = msmt17.load(msmt_root or root, combine_val=combine_val, strict=strict)
    market = market1501.load(market_root or root, strict=strict)
    return merge_datasets([msmt, market], test_from=1, name="mm")
