"""Market-1501 (Zheng et al., ICCV 2015): 1501 ids, 6 cameras.

Layout (flat, or inside ``Market-1501-v15.09.15/``)::

    bounding_box_train/   12,936 images, 751 ids          -> train (relabelled 0..750)
    query/                 3,368 images, 750 ids          -> query
    bounding_box_test/    19,732 files                    -> gallery (15,913 after junk removal)
    images/               optional 500k distractor set    -> extra gallery (``extra_gallery=True``)

File name ``0002_c1s1_000451_03.jpg``: pid 0002, camera 1 (stored 0-based), sequence 1, frame 451,
detection box 3. pid -1 is junk and is dropped here (counted in ``notes``); pid 0 marks a
distractor (a bad detection) that stays in the gallery as a negative.
"""
from __future__ import annotations

import os
from pathlib import Path

from reidkit.data.records import Record

from .common import (MARKET_NAME, ParsedDataset, ParseReport, check_root, find_layout, list_files,
                     parse_named_folder, split_images)

SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
LAYOUT_NAMES = ("Market-1501-v15.09.15", "Market-1501", "market1501", "Market1501")


def load_market_like(root: str | os.PathLike, name: str, layout_names: tuple[str, ...], *,
                     strict: bool = True, extra_gallery: bool = False,
                     any_subfolder: bool = True) -> ParsedDataset:
    """Parse any dataset with the Market-1501 folder names and file-name pattern."""
    base = find_layout(check_root(root, name), list(SPLIT_FOLDERS.values()), layout_names, any_subfolder)
    report = ParseReport(name, base)
    if not any((base / f).is_dir() for f in SPLIT_FOLDERS.values()):
        where = f"in the folder itself and in {', '.join(layout_names)}" if layout_names else "there"
        report.error(f"{root}: no {name} layout found (looked for {', '.join(SPLIT_FOLDERS.values())} "
                     f"{where})")
        return report.finish([], [], [], strict=strict)
    train = parse_named_folder(base / SPLIT_FOLDERS["train"], "train", MARKET_NAME, report,
                               drop_distractors=True)
    query = parse_named_folder(base / SPLIT_FOLDERS["query"], "query", MARKET_NAME, report,
                               drop_distractors=True)
    gallery = parse_named_folder(base / SPLIT_FOLDERS["gallery"], "gallery", MARKET_NAME, report)
    if extra_gallery:
        gallery += _extra_gallery(base / "images", report)
    return report.finish(train, query, gallery, strict=strict)


def _extra_gallery(folder: Path, report: ParseReport) -> list[Record]:
    """The 500k distractor set: Market-named files keep their labels, others become distractors."""
    if not folder.is_dir():
        report.error(f"{folder}: missing extra gallery folder (extra_gallery=True needs the 500k "
                     f"distractor images in 'images/')")
        return []
    records, unnamed = [], 0
    for p in split_images(list_files(folder, recursive=True), report, folder):
        parsed = MARKET_NAME.parse(os.path.basename(p))
        if parsed is None:
            unnamed += 1
            records.append(Record(p, 0, -1))
        elif parsed[0] != -1:
            records.append(Record(p, *parsed))
    if unnamed:
        report.note(f"extra gallery: {unnamed} image(s) without Market names kept as distractors "
                    f"(pid 0, camera unknown)")
    report.note(f"extra gallery: added {len(records)} image(s) from {folder}")
    return records


def load(root: str | os.PathLike, *, strict: bool = True, extra_gallery: bool = False) -> ParsedDataset:
    """Market-1501 at ``root`` (flat or versioned sub-folder). ``extra_gallery`` adds ``images/``."""
    return load_market_like(root, "market1501", LAYOUT_NAMES, strict=strict, extra_gallery=extra_gallery)
