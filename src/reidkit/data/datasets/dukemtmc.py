"""DukeMTMC-reID (Ristani et al. 2016 / Zheng et al. 2017): 1,404 ids, 8 cameras.

Same layout and file names as Market-1501 (``0001_c2_f0046182.jpg``), in ``DukeMTMC-reID/``:
``bounding_box_train`` (16,522 images, 702 ids), ``query`` (2,228), ``bounding_box_test`` (17,661).
The owners withdrew the data set; the reader stays for users who hold a copy.
"""
from __future__ import annotations

import os

from .common import ParsedDataset
from .market1501 import load_market_like

LAYOUT_NAMES = ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmcreid", "DukeMTMC")


def load(root: str | os.PathLike, *, strict: bool = True) -> ParsedDataset:
    """DukeMTMC-reID at ``root`` (flat or inside ``DukeMTMC-reID/``)."""
    return load_market_like(root, "dukemtmc", LAYOUT_NAMES, strict=strict)
