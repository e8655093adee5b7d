"""iLIDS-VID (Wang et al., ECCV 2014): 300 ids, 2 cameras, one tracklet per id and camera (23-192 frames).

Layout (flat, or inside ``i-LIDS-VID/sequences/``)::

    cam1/person001/cam1_person001_00317.png ...
    cam2/person001/cam2_person001_00001.png ...

Protocol (as in the field): 10 random splits of the 300 ids into 150 train and 150 test ids;
train = both cameras of the train ids (relabelled), query = cam1 of the test ids, gallery = cam2;
CMC is reported averaged over the splits. The splits are made from ``seed`` on first use and saved as
JSON next to ``cam1/`` (``splits_ilids-vid_seed0.json``), or read from ``split_file`` (a bare list of
``{"train": [...], "test": [...]}`` with person folder names is read too).
"""
from __future__ import annotations

import os
import re

from .video_common import ParsedVideoDataset, load_two_camera

CAMERAS = ("cam1", "cam2")
LAYOUT_NAMES = ("sequences", "i-LIDS-VID", "iLIDS-VID", "ilids-vid", "ilidsvid")
PERSON = re.compile(r"person_?(\d+)")


def load(root: str | os.PathLike, *, split_id: int = 0, seed: int = 0, split_file: str | None = None,
         min_frames: int = 1, strict: bool = True) -> ParsedVideoDataset:
    """iLIDS-VID at ``root``, split ``split_id`` (0..9) of the splits made from ``seed``."""
    return load_two_camera(root, "ilids-vid", CAMERAS, LAYOUT_NAMES, PERSON, split_id=split_id, seed=seed,
                           split_file=split_file, min_frames=min_frames, strict=strict)
