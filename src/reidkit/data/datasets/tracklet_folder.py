"""Your own tracklets: one folder per identity, camera and tracklet (``format="tracklets"``).

Layout::

    root/<pid>/<camera>/<tracklet>/<frames>                         -> train only
    root/{train,query,gallery}/<pid>/<camera>/<tracklet>/<frames>   -> the splits that are there

A lone ``gallery/`` is a valid dataset (a gallery to index, e.g. from ``reidkit datasets
mot-to-tracklets``); ``query/`` needs ``gallery/``. Identity folder names become pids: their integer
value when every name is an integer, else their rank in sorted order (shared by all splits, so the
labels agree). Camera folder names map to 0..C-1 in sorted (numeric when possible) order, shared by
all splits. Frames are every image file of a tracklet folder, in natural order (``2.jpg`` before
``10.jpg``); an empty tracklet folder is an error.
"""
from __future__ import annotations

import os
from pathlib import Path

from reidkit.data.records import Tracklet

from .common import check_root
from .video_common import ParsedVideoDataset, VideoParseReport, drop_short, natural_key, subfolders, tracklet_frames

SPLITS = ("train", "query", "gallery")


def load(root: str | os.PathLike, *, min_frames: int = 1, strict: bool = True) -> ParsedVideoDataset:
    """Tracklets under ``root`` (or under its train/query/gallery sub-folders)."""
    root = check_root(root, "tracklets")
    report = VideoParseReport("tracklets", root)
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if not split_dirs:
        split_dirs = {"train": root}
    elif "query" in split_dirs and "gallery" not in split_dirs:
        report.error(f"{root / 'gallery'}: missing gallery folder (a query split needs a gallery)")

    # First pass: (split, pid name, camera name, frames) of every tracklet folder.
    rows: list[tuple[str, str, str, list[str]]] = []
    for split, d in split_dirs.items():
        pid_dirs, loose = subfolders(d)
        if loose:
            report.warn(f"{d}: {len(loose)} file(s) outside identity folders skipped, e.g. {loose[0]!r}")
        for pd in pid_dirs:
            if split == "train" and d == root and pd.name in SPLITS:
                continue
            cam_dirs, loose = subfolders(pd.path)
            if loose:
                report.count("identity folder(s) with files outside camera folders (skipped)",
                             f"{pd.path} ({len(loose)})", error=False)
            for cd in cam_dirs:
                track_dirs, loose = subfolders(cd.path)
                if loose:
                    report.count("camera folder(s) with files outside tracklet folders (skipped)",
                                 f"{cd.path} ({len(loose)})", error=False)
                for td in track_dirs:
                    frames = tracklet_frames(td.path, report)
                    if frames:
                        rows.append((split, pd.name, cd.name, frames))

    names = sorted({r[1] for r in rows}, key=natural_key)
    if all(n.lstrip("-").isdigit() for n in names):
        pid_of = {n: int(n) for n in names}
    else:
        pid_of = {n: i for i, n in enumerate(names)}
        report.note(f"identity folder names are not all integers: pids are their sorted rank (0..{len(names) - 1})")
    cams = sorted({r[2] for r in rows}, key=_cam_key)
    cam_of = {c: i for i, c in enumerate(cams)}
    if cams and cams != [str(i) for i in range(len(cams))]:
        shown = ", ".join(f"{c} -> {i}" for c, i in list(cam_of.items())[:8]) + (", ..." if len(cams) > 8 else "")
        report.note(f"camera folders map to camera ids: {shown}")
    out: dict[str, list[Tracklet]] = {s: [] for s in SPLITS}
    for split, pid, cam, frames in rows:
        out[split].append(Tracklet(tuple(frames), pid_of[pid], cam_of[cam]))
    for s, d in split_dirs.items():
        out[s] = drop_short(out[s], min_frames, s, report)
        report.require_nonempty(s, out[s], d)
    return report.finish(out["train"], out["query"], out["gallery"], strict=strict)


def _cam_key(name: str) -> tuple:
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, *natural_key(name))


def write_layout_path(root: str | os.PathLike, split: str, pid: int | str, camera: str, tracklet: str) -> Path:
    """Where a tracklet folder of this layout lives (the writers use it, e.g. the MOT adapter)."""
    return Path(root) / split / str(pid) / camera / tracklet
