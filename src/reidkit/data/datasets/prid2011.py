"""PRID2011 (Hirzer et al., SCIA 2011), multi-shot: 385 ids in camera A, 749 in camera B, the first 200 in both.

Layout (flat, or inside ``prid_2011/multi_shot/``)::

    cam_a/person_0001/0001.png ...      one tracklet per person and camera (5-675 frames)
    cam_b/person_0001/0001.png ...

Protocol (Wang et al., ECCV 2014, followed by the video re-ID field): the ids in both cameras (1..200)
whose sequences have at least ``min_frames`` frames in each camera (default 22, i.e. "more than 21
frames"; papers report 178 ids, a count not checked here without the data) are halved at random 10 times; train = both cameras of
the train ids, query = camera A of the test ids, gallery = camera B. The splits are made from
``seed`` and saved as JSON next to ``cam_a/``, or read from ``split_file`` (a list of
``{"train": [...], "test": [...]}`` with person folder names is read too).
"""
from __future__ import annotations

import os
import re

from .video_common import ParsedVideoDataset, load_two_camera

CAMERAS = ("cam_a", "cam_b")
LAYOUT_NAMES = ("multi_shot", "prid_2011", "prid2011", "PRID2011")
PERSON = re.compile(r"person_?(\d+)")
SHARED_IDS = 200  # persons 0001..0200 are the same people in both cameras; the rest only look alike by name


def load(root: str | os.PathLike, *, split_id: int = 0, seed: int = 0, split_file: str | None = None,
         min_frames: int = 22, strict: bool = True) -> ParsedVideoDataset:
    """PRID2011 multi-shot at ``root``, split ``split_id`` (0..9) of the splits made from ``seed``."""
    return load_two_camera(root, "prid2011", CAMERAS, LAYOUT_NAMES, PERSON, split_id=split_id, seed=seed,
                           split_file=split_file, min_frames=min_frames, strict=strict, max_pid=SHARED_IDS)
