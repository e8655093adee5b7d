"""CUHK03-NP (Zhong et al., CVPR 2017 re-split of CUHK03): 767 train / 700 test ids, 2 cameras.

Market-like folders, one set per box type::

    cuhk03-np/detected/{bounding_box_train, query, bounding_box_test}   (7,365 / 1,400 / 5,332)
    cuhk03-np/labeled/{bounding_box_train, query, bounding_box_test}    (7,368 / 1,400 / 5,328)

File names follow Market (``0001_c1_1.png``). ``variant`` picks ``detected`` (the harder, default
setting in papers) or ``labeled``. ``root`` may also point straight at one variant's folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from reidkit.data.records import DatasetError

from .common import ParsedDataset
from .market1501 import SPLIT_FOLDERS, load_market_like

VARIANTS = ("detected", "labeled")


def load(root: str | os.PathLike, *, variant: str = "detected", strict: bool = True) -> ParsedDataset:
    """CUHK03-NP ``variant`` ('detected' or 'labeled') under ``root``."""
    if variant not in VARIANTS:
        raise DatasetError(f"{root}: cuhk03 variant must be 'detected' or 'labeled', got {variant!r}")
    root = Path(root).expanduser()
    if any((root / f).is_dir() for f in SPLIT_FOLDERS.values()):
        layouts: tuple[str, ...] = ()  # already pointing at the variant folder
    else:
        layouts = (variant, f"cuhk03-np/{variant}", f"cuhk03_np/{variant}", f"CUHK03-NP/{variant}",
                   f"cuhk03/{variant}", f"cuhk03/cuhk03-np/{variant}")
    return load_market_like(root, f"cuhk03-np ({variant})", layouts, strict=strict, any_subfolder=False)
