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
from .merge import merge_datasets


class FormatInfo(NamedTuple):
    module: str        # under reidkit.data.datasets
    function: str      # the reader: function(root, **options) -> ParsedDataset
    description: str


FORMATS: dict[str, FormatInfo] = {
    "market1501": FormatInfo("market1501", "load", "Market-1501: bounding_box_train / query / bounding_box_test, "
                             "flat or in Market-1501-v15.09.15/; extra_gallery=True adds images/ (500k)"),
    "dukemtmc": FormatInfo("dukemtmc", "load", "DukeMTMC-reID: Market layout, flat or in DukeMTMC-reID/"),
    "msmt17": FormatInfo("msmt17", "load", "MSMT17 V1 (train/, test/) or V2 (mask_*_v2/) with list_*.txt; "
                         "combine_val=True trains on list_train + list_val (official recipe)"),
    "cuhk03": FormatInfo("cuhk03", "load", "CUHK03-NP, variant='detected' (default) or 'labeled', "
                         "Market-like folders"),
    "folder": FormatInfo("generic", "load_folder", "one folder per identity (optionally under train/, query/, "
                         "gallery/); camera from camera_pattern regex, else one camera"),
    "csv": FormatInfo("generic", "load_csv", "CSV manifest path,pid,camid[,split], paths relative to the CSV"),
    "unlabelled": FormatInfo("unlabelled", "load", "image folder scanned recursively (LUPerson-like), or an "
                             "ordered file_list (.txt or CFS_list.pkl) with keep_num / keep_ratio"),
    "mm": FormatInfo("merge", "load_mm", "official Market+MSMT17 merged training set (MSMT17 list_train, then "
                     "Market relabelled after it, cameras +15); tested on Market"),
    # Tracklet (video) formats: these readers return a VideoDataset (tracklets of frame paths).
    "mars": FormatInfo("mars", "load", "MARS tracklets: bbox_train/, bbox_test/ and info/ (name lists, "
                       "tracks_*_info.mat, query_IDX.mat); junk -1 dropped, distractors 0 kept in the gallery"),
    "duke-video": FormatInfo("duke_video", "load", "DukeMTMC-VideoReID tracklets: train|query|gallery/<pid>/"
                             "<tracklet>/<pid>_C<cam>_F<frame>...jpg (also what 'reidkit synth --tracklets' writes)"),
    "ilids-vid": FormatInfo("ilids_vid", "load", "iLIDS-VID tracklets: sequences/cam1|cam2/personNNN/; 10 random "
                            "150/150 id splits saved as JSON, split_id picks one; query cam1, gallery cam2"),
    "prid2011": FormatInfo("prid2011", "load", "PRID2011 tracklets: multi_shot/cam_a|cam_b/person_NNNN/; ids in "
                           "both cameras with >= min_frames frames, 10 random half splits (JSON), split_id"),
    "tracklets": FormatInfo("tracklet_folder", "load", "your tracklets: <pid>/<camera>/<tracklet>/<frames>, "
                            "optionally under train/, query/, gallery/ (what 'reidkit datasets mot-to-tracklets' "
                            "writes)"),
}

# Spellings users type for the same formats.
ALIASES = {"market": "market1501", "market-1501": "market1501", "duke": "dukemtmc",
           "dukemtmc-reid": "dukemtmc", "dukemtmcreid": "dukemtmc", "msmt": "msmt17",
           "cuhk03-np": "cuhk03", "cuhk03np": "cuhk03", "generic": "folder", "manifest": "csv",
           "unlabeled": "unlabelled", "lup": "unlabelled", "luperson": "unlabelled",
           "dukemtmc-videoreid": "duke-video", "dukevideo": "duke-video", "duke_video": "duke-video",
           "ilidsvid": "ilids-vid", "i-lids-vid": "ilids-vid", "prid": "prid2011", "prid-2011": "prid2011",
           "tracklet-folder": "tracklets", "video-folder": "tracklets"}


def get_reader(fmt: str):
    """The reader function of ``fmt`` (a FORMATS name or an alias)."""
    key = fmt.lower()
    key = ALIASES.get(key, key)
    info = FORMATS.get(key)
    if info is None:
        raise DatasetError(f"unknown dataset format {fmt!r}; supported: {', '.join(FORMATS)}")
    return getattr(importlib.import_module(f"{__name__}.{info.module}"), info.function)


def load_dataset(fmt: str, root: str | os.PathLike, **kwargs: Any) -> ReIDDataset:
    """Parse the dataset at ``root`` in format ``fmt`` (see ``FORMATS``); kwargs go to the reader.

    Raises ``DatasetError`` naming the path and the problem(s).
    """
    reader = get_reader(fmt)
    accepted = inspect.signature(reader).parameters
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        options = [p for p in accepted if p != "root"]
        raise DatasetError(f"{root}: format {fmt!r} does not take option(s) {', '.join(unknown)}; "
                           f"it takes {', '.join(options)}")
    return reader(root, **kwargs)


__all__ = ["ALIASES", "FORMATS", "FormatInfo", "ParsedDataset", "get_reader", "load_dataset", "merge_datasets"]
