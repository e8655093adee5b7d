"""Your own data: one folder per identity, or a CSV manifest ``path,pid,camid``.

Folder layout (``format="folder"``)::

    root/<identity>/<image>                    -> train only
    root/{train,query,gallery}/<identity>/<image>   -> the three splits

Identity folder names become pids: their integer value when every name is an integer, else
their rank in sorted order (shared by query and gallery, so the labels agree). The camera comes
from ``camera_pattern``, a regex searched in the file name (named group ``camid`` or group 1), its
values mapped to 0..C-1 in sorted (numeric when possible) order; without a pattern every image is
camera 0, and query/gallery data then needs the ``--no-camera`` evaluation protocol.

CSV manifest (``format="csv"``, ``root`` is the .csv file): columns ``path,pid,camid`` and an
optional ``split`` (train / query / gallery; default train), with or without a header row. Paths
are relative to the CSV's folder (or ``image_root``). An empty camid means unknown (-1).
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from reidkit.data.records import DatasetError, Record

from .common import ParsedDataset, ParseReport, check_root, list_files, split_images

SPLITS = ("train", "query", "gallery")


def _sort_key(value: str):
    return (0, int(value), "") if value.lstrip("-").isdigit() else (1, 0, value)


def load_folder(root: str | os.PathLike, *, camera_pattern: str | None = None,
                strict: bool = True) -> ParsedDataset:
    """Identity folders under ``root`` (or under its train/query/gallery sub-folders)."""
    root = check_root(root, "folder")
    report = ParseReport("folder", root)
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if not split_dirs:
        split_dirs = {"train": root}
    elif "query" in split_dirs or "gallery" in split_dirs:
        for s in ("query", "gallery"):
            if s not in split_dirs:
                report.error(f"{root / s}: missing {s} folder (query and gallery come together)")
    try:
        cam_re = re.compile(camera_pattern) if camera_pattern else None
    except re.error as e:
        raise DatasetError(f"{root}: camera_pattern {camera_pattern!r} is not a valid regex ({e})") from None

    # First pass: (split, identity name, path, camera string) for every image.
    rows: list[tuple[str, str, str, str]] = []
    for split, d in split_dirs.items():
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        loose = [e.name for e in entries if e.is_file()]
        if loose:
            report.warn(f"{d}: {len(loose)} file(s) outside identity folders skipped, e.g. {loose[0]!r}")
        unmatched: list[str] = []
        for e in entries:
            if not e.is_dir() or (split == "train" and d == root and e.name in SPLITS):
                continue
            for p in split_images(list_files(e.path, recursive=True), report, e.path):
                cam = "0"
                if cam_re is not None:
                    m = cam_re.search(os.path.basename(p))
                    if m is None:
                        unmatched.append(p)
                        continue
                    cam = (m.group("camid") if "camid" in cam_re.groupindex
                           else m.group(1) if cam_re.groups else m.group(0))
                rows.append((split, e.name, p, cam))
        if unmatched:
            report.warn(f"{d}: {len(unmatched)} file name(s) do not match camera_pattern "
                        f"{camera_pattern!r} and were skipped, e.g. {os.path.basename(unmatched[0])!r}")

    names = sorted({r[1] for r in rows}, key=_sort_key)
    if all(n.lstrip("-").isdigit() for n in names):
        pid_of = {n: int(n) for n in names}
    else:
        pid_of = {n: i for i, n in enumerate(names)}
        report.note(f"identity folder names are not all integers: pids are their sorted rank "
                    f"(0..{len(names) - 1})")
    cams = sorted({r[3] for r in rows}, key=_sort_key)
    cam_of = {c: i for i, c in enumerate(cams)}
    if cam_re is None:
        report.note("no camera_pattern: every image is camera 0 (evaluate with --no-camera)")
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for split, name, p, cam in rows:
        out[split].append(Record(p, pid_of[name], cam_of[cam]))
    for s, d in split_dirs.items():
        report.require_nonempty(s, out[s], d)
    return report.finish(out["train"], out["query"], out["gallery"], strict=strict)


def load_csv(root: str | os.PathLike, *, image_root: str | os.PathLike | None = None,
             check_files: bool = True, strict: bool = True) -> ParsedDataset:
    """The manifest at ``root`` (a .csv file)."""
    csv_path = Path(root).expanduser()
    if csv_path.is_dir():
        raise DatasetError(f"{csv_path}: is a folder; --format csv takes the manifest file (path,pid,camid"
                           "[,split]); for one folder per identity use --format folder")
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: CSV manifest not found")
    base = Path(image_root).expanduser() if image_root is not None else csv_path.parent
    report = ParseReport("csv", csv_path)
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        table = [row for row in csv.reader(f) if row and any(c.strip() for c in row)]
    if not table:
        raise DatasetError(f"{csv_path}: CSV manifest is empty")
    columns = ["path", "pid", "camid", "split"]
    first = [c.strip().lower() for c in table[0]]
    start = 0
    if "path" in first and "pid" in first:  # header row: columns by name, any order
        columns, start = first, 1
    elif len(first) > 1 and not first[1].lstrip("-").isdigit():
        raise DatasetError(f"{csv_path}: line 1: expected 'path,pid,camid[,split]' (a header row must "
                           f"name the columns path and pid), got {table[0]!r}")
    col = {name: columns.index(name) for name in ("path", "pid", "camid", "split") if name in columns}
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    bad, missing = [], []
    for lineno, row in enumerate(table[start:], start + 1):
        try:
            path = row[col["path"]].strip()
            pid = int(row[col["pid"]])
            cam_text = row[col["camid"]].strip() if "camid" in col and col["camid"] < len(row) else ""
            camid = int(cam_text) if cam_text else -1
            split = row[col["split"]].strip().lower() if "split" in col and col["split"] < len(row) else ""
            split = split or "train"
            if split not in SPLITS or not path:
                raise ValueError
        except (IndexError, ValueError):
            bad.append(f"line {lineno}: {','.join(row)!r}")
            continue
        full = path if os.path.isabs(path) else str(base / path)
        if check_files and not os.path.isfile(full):
            missing.append(full)
            continue
        out[split].append(Record(full, pid, camid))
    if bad:
        report.warn(f"{csv_path}: {len(bad)} malformed row(s) skipped (expected path,int pid,int camid"
                    f"[,train|query|gallery]), e.g. {bad[0]}")
    if missing:
        report.warn(f"{csv_path}: {len(missing)} listed file(s) not found, e.g. {missing[0]!r}")
    if not any(out.values()):
        report.error(f"{csv_path}: no usable rows")
    elif out["query"] or out["gallery"]:  # an evaluation set needs both sides
        for s in ("query", "gallery"):
            report.require_nonempty(s, out[s], csv_path)
    return report.finish(out["train"], out["query"], out["gallery"], strict=strict)


def load(root: str | os.PathLike, **kwargs) -> ParsedDataset:
    """Dispatch on what ``root`` is: a .csv file -> ``load_csv``, a folder -> ``load_folder``."""
    return (load_csv if Path(root).suffix.lower() == ".csv" else load_folder)(root, **kwargs)
