"""Dataset readers: one module per on-disk format, all producing ``ReIDDataset`` records.

    from reidkit.data.datasets import load_dataset
    ds = load_dataset("market1501", "~/data/market1501")     # flat or Market-1501-v15.09.15/
    ds.train[0]  # Record(path='.../0002_c1s1_000451_03.jpg', pid=0, camid=0)

Train splits are relabelled to ``0..num_ids-1``; query and gallery keep the original pids so that
evaluation sees the dataset's own labels. Parsers never open images (see ``reidkit.data.images``).
``strict=False`` returns what could be read with every problem in ``ds.problems`` instead of raising
(``reidkit datasets check`` uses it).
"""
from __future__ import annotations

import importlib
import inspect
import os
from typing import Any, NamedTuple

from reidkit.data.records import DatasetError, ReIDDataset

from .common import ParsedDataset


class FormatInfo(NamedTuple):
    module: str
    description: str


# name -> (module under reidkit.data.datasets, one-line description); every module has ``load(root, ...)``.
FORMATS: dict[str, FormatInfo] = {
    "market1501": FormatInfo("market1501", "Market-1501: bounding_box_train / query / bounding_box_test, "
                                           "flat or in Market-1501-v15.09.15/; extra_gallery=True adds images/ (500k)"),
    "unlabelled": FormatInfo("unlabelled", "image folder scanned recursively (LUPerson-like), or an ordered "
                                           "file_list (.txt or CFS_list.pkl) with keep_num / keep_ratio"),
}


def load_dataset(fmt: str, root: str | os.PathLike, **kwargs: Any) -> ReIDDataset:
    """Parse the dataset at ``root`` in format ``fmt`` (see ``FORMATS``); kwargs go to the reader.

    Raises ``DatasetError`` naming the path and the problem(s).
    """
    info = FORMATS.get(fmt.lower().replace("-", "").replace("_", "") if fmt not in FORMATS else fmt)
    if info is None:
        raise DatasetError(f"unknown dataset format {fmt!r}; supported: {', '.join(FORMATS)}")
    reader = importlib.import_module(f"{__name__}.{info.module}").load
    accepted = inspect.signature(reader).parameters
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        options = [p for p in accepted if p != "root"]
        raise DatasetError(f"{root}: format {fmt!r} does not take option(s) {', '.join(unknown)}; "
                           f"it takes {', '.join(options)}")
    return reader(root, **kwargs)


__all__ = ["FORMATS", "FormatInfo", "ParsedDataset", "load_dataset"]
