"""MSMT17 (Wei et al., CVPR 2018): 4,101 ids, 15 cameras, splits given by list files.

Layouts (inside ``MSMT17_V1/``, ``MSMT17_V2/`` or flat)::

    V1:  train/<pid>/<file>.jpg   test/<pid>/<file>.jpg
    V2:  mask_train_v2/...        mask_test_v2/...         (faces blurred)
    list_train.txt  list_val.txt  list_query.txt  list_gallery.txt   ("0000/0000_000_01_0303morning_0015_0.jpg 0")

The camera is the third underscore-separated field of the file name (1..15, stored 0-based).
``combine_val=True`` (default) trains on list_train + list_val = 32,621 images / 1,041 ids, as the
TransReID(-SSL) recipe does; fast-reid and torchreid use list_train alone (30,248), a silent ~8 %
difference between published baselines. Prefer V1: published V2 numbers are several mAP lower.
Query / gallery labels restart at 0 and are kept as listed.
"""
from __future__ import annotations

import os
from pathlib import Path

from reidkit.data.records import DatasetError, Record

from .common import ParsedDataset, ParseReport, check_root, list_files

FOLDERS = {"v1": ("train", "test"), "v2": ("mask_train_v2", "mask_test_v2")}
LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")


def _find_base(root: Path, version: str) -> tuple[Path, str]:
    """The folder holding the list files and image folders, and its version ('v1' or 'v2')."""
    versions = ("v1", "v2") if version == "auto" else (version,)
    names = {"v1": ("MSMT17_V1", "msmt17_v1"), "v2": ("MSMT17_V2", "msmt17_v2")}
    for v in versions:
        for sub in ("", *names[v], "MSMT17", "msmt17", *(f"msmt17/{n}" for n in names[v])):
            base = root / sub if sub else root
            if (base / FOLDERS[v][0]).is_dir() or (base / FOLDERS[v][1]).is_dir():
                return base, v
    return root, versions[0]


def _files_under(image_dir: Path, cache: dict[Path, set[str]]) -> set[str]:
    """Relative paths of every file under ``image_dir`` (one scan, shared by the splits)."""
    if image_dir not in cache:
        cut = len(str(image_dir)) + 1
        cache[image_dir] = {p[cut:] for p in list_files(image_dir, recursive=True)} \
            if image_dir.is_dir() else set()
    return cache[image_dir]


def _read_list(list_path: Path, image_dir: Path, split: str, report: ParseReport,
               cache: dict[Path, set[str]]) -> list[Record]:
    if not list_path.is_file():
        report.error(f"{list_path}: missing {split} list file")
        return []
    on_disk = _files_under(image_dir, cache)
    records, malformed, missing = [], [], []
    for lineno, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rel, label = parts[0], int(parts[1])
            camid = int(os.path.basename(rel).split("_")[2]) - 1
            if len(parts) != 2 or camid < 0:
                raise ValueError
        except (IndexError, ValueError):
            malformed.append(f"line {lineno}: {line.strip()!r}")
            continue
        rel = rel.replace("/", os.sep)
        if rel not in on_disk:
            missing.append(rel)
            continue
        records.append(Record(str(image_dir / rel), label, camid))
    if malformed:
        report.warn(f"{list_path}: {len(malformed)} malformed line(s) skipped (expected "
                    f"'<pid>/<pid>_<n>_<camera>_....jpg <label>'), e.g. {malformed[0]}")
    if missing:
        report.warn(f"{list_path}: {len(missing)} listed image(s) not found in {image_dir}, "
                    f"e.g. {missing[0]!r}")
    return records


def load(root: str | os.PathLike, *, version: str = "auto", combine_val: bool = True,
         strict: bool = True) -> ParsedDataset:
    """MSMT17 under ``root``; ``version`` is 'auto' (V1 first), 'v1' or 'v2'."""
    version = version.lower()
    if version not in ("auto", "v1", "v2"):
        raise DatasetError(f"{root}: msmt17 version must be 'auto', 'v1' or 'v2', got {version!r}")
    base, v = _find_base(check_root(root, "msmt17"), version)
    report = ParseReport(f"msmt17 ({v})", base)
    train_dir, test_dir = (base / f for f in FOLDERS[v])
    for d in (train_dir, test_dir):
        if not d.is_dir():
            report.error(f"{d}: missing image folder (MSMT17 {v.upper()} keeps images in "
                         f"{FOLDERS[v][0]}/ and {FOLDERS[v][1]}/)")
    cache: dict[Path, set[str]] = {}
    train = _read_list(base / "list_train.txt", train_dir, "train", report, cache)
    if combine_val:
        val = _read_list(base / "list_val.txt", train_dir, "val", report, cache)
        train += val
        report.note(f"train: list_train + list_val ({len(val)} val images), as the official recipe")
    query = _read_list(base / "list_query.txt", test_dir, "query", report, cache)
    gallery = _read_list(base / "list_gallery.txt", test_dir, "gallery", report, cache)
    for split, recs, where in (("train", train, train_dir), ("query", query, test_dir),
                               ("gallery", gallery, test_dir)):
        report.require_nonempty(split, recs, where)
    return report.finish(train, query, gallery, strict=strict)
