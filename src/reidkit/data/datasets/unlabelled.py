"""Unlabelled image pools for self-supervised pre-training (LUPerson-like), and CFS-ordered subsets.

Two ways in:
  * a folder, scanned recursively (``os.scandir``; nothing is opened or stat-ed, so millions of
    files list in seconds), in sorted path order;
  * an ordered file list, most relevant first (CFS), as a text file (one path per line, relative
    to ``root`` or absolute; an optional tab-separated score after the path is ignored) or the
    official ``CFS_list.pkl`` (a pickled list of names, read with an unpickler that refuses every
    object other than lists and strings, so a hostile file cannot run code).

``keep_num`` / ``keep_ratio`` keep the head of that order: the official recipe trains on
``CFS_list[:keep_num]`` with keep_num 2,508,146 = round(0.6 x 4,180,243).
Records are ``(path, pid=-1, camid=-1)``: no identity, no camera.
"""
from __future__ import annotations

import io
import math
import os
import pickle
from pathlib import Path
from typing import Sequence

from reidkit.data.images import is_image_file
from reidkit.data.records import DatasetError, Record

from .common import ParsedDataset, ParseReport, check_root, list_files, split_images


def scan_images(root: str | os.PathLike, report: ParseReport | None = None) -> list[str]:
    """All image files under ``root`` (recursive), sorted. Non-image files are counted in ``report``."""
    root = check_root(root, "image folder")
    report = report or ParseReport("unlabelled", root)
    return split_images(list_files(root, recursive=True), report, root)


def read_file_list(path: str | os.PathLike) -> list[str]:
    """Names from an ordered list file (``.txt``/``.lst`` lines or a pickled list of strings)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path}: file list not found")
    data = path.read_bytes()
    if path.suffix in (".pkl", ".pickle") or data[:1] == b"\x80":
        names = _safe_unpickle(data, path)
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DatasetError(f"{path}: file list is not UTF-8 text ({e})") from None
        names = [line.split("\t", 1)[0].strip() for line in text.splitlines()]
        names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise DatasetError(f"{path}: file list is empty")
    return names


class _ListOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # called for any object beyond builtin containers
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _safe_unpickle(data: bytes, path: Path) -> list[str]:
    try:
        obj = _ListOnlyUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # noqa: BLE001 -- any failure here is a bad file, reported as such
        raise DatasetError(f"{path}: not a pickled list of file names ({e})") from None
    if not isinstance(obj, (list, tuple)) or not all(isinstance(n, str) for n in obj):
        raise DatasetError(f"{path}: the pickle holds {type(obj).__name__}, expected a list of file names")
    return list(obj)


def keep_head(items: Sequence, keep_num: int | None = None, keep_ratio: float | None = None,
              where: str = "file list") -> list:
    """The first ``keep_num`` items, or the first ``round(keep_ratio * len)`` (half rounds up)."""
    if keep_num is not None and keep_ratio is not None:
        raise DatasetError(f"{where}: give keep_num or keep_ratio, not both")
    if keep_ratio is not None:
        if not 0.0 < keep_ratio <= 1.0:
            raise DatasetError(f"{where}: keep_ratio must be in (0, 1], got {keep_ratio}")
        keep_num = math.floor(keep_ratio * len(items) + 0.5)
    if keep_num is None:
        return list(items)
    if keep_num < 1:
        raise DatasetError(f"{where}: keep_num must be at least 1, got {keep_num}")
    return list(items[:keep_num])


def load_paths(root: str | os.PathLike, *, file_list: str | os.PathLike | None = None,
               keep_num: int | None = None, keep_ratio: float | None = None,
               check_files: bool = True, report: ParseReport | None = None) -> list[str]:
    """Image paths of the pool, in order (lighter than records for millions of images)."""
    root = check_root(root, "unlabelled")
    report = report or ParseReport("unlabelled", root)
    if file_list is None:
        return keep_head(scan_images(root, report), keep_num, keep_ratio, where=str(root))
    names = keep_head(read_file_list(file_list), keep_num, keep_ratio, where=os.fspath(file_list))
    paths = [n if os.path.isabs(n) else os.path.join(root, n) for n in names]
    not_images = [p for p in paths if not is_image_file(p)]
    if not_images:
        report.warn(f"{file_list}: skipped {len(not_images)} listed non-image name(s), "
                    f"e.g. {not_images[0]!r}")
        bad = set(not_images)
        paths = [p for p in paths if p not in bad]
    if check_files:
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            report.warn(f"{file_list}: {len(missing)} listed file(s) not found under {root}, "
                        f"e.g. {missing[0]!r}")
            gone = set(missing)
            paths = [p for p in paths if p not in gone]
    return paths


def load(root: str | os.PathLike, *, file_list: str | os.PathLike | None = None,
         keep_num: int | None = None, keep_ratio: float | None = None, check_files: bool = True,
         strict: bool = True) -> ParsedDataset:
    """The pool as a dataset: every image in ``train`` as ``Record(path, -1, -1)``."""
    report = ParseReport("unlabelled", root)
    paths = load_paths(root, file_list=file_list, keep_num=keep_num, keep_ratio=keep_ratio,
                       check_files=check_files, report=report)
    report.require_nonempty("train", paths, file_list or root)
    if file_list is not None:
        report.note(f"train: {len(paths)} image(s) in the order of {file_list}")
    return report.finish([Record(p, -1, -1) for p in paths], [], [], strict=strict, relabel_train=False)
