"""DukeMTMC-VideoReID (Wu et al., CVPR 2018): 1,812 ids, 8 cameras, 4,832 tracklets.

Layout (flat, or inside ``DukeMTMC-VideoReID/``)::

    train/<pid>/<tracklet>/0001_C6_F0016_X30823.jpg   702 ids, 2,196 tracklets   -> train (relabelled)
    query/<pid>/<tracklet>/...                         702 ids, 702 tracklets     -> query
    gallery/<pid>/<tracklet>/...                       1,110 ids, 2,636 tracklets -> gallery (408 distractor ids)

File name ``0001_C6_F0016_X30823.jpg``: pid 0001, camera 6 (stored 0-based), frame 16 of the
tracklet. Frames are numbered consecutively within a tracklet (some start at 2): a hole in the
numbering is a missing frame. The camera comes from the file names, checked on every frame.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from reidkit.data.records import Tracklet

from .common import check_root, find_layout
from .video_common import (ParsedVideoDataset, VideoParseReport, drop_short, ensure_dir,
                           missing_frame_numbers, subfolders, tracklet_frames)

SPLITS = ("train", "query", "gallery")
LAYOUT_NAMES = ("DukeMTMC-VideoReID", "dukemtmc-videoreid", "dukemtmcvidreid", "DukeMTMC-VideoReID-v1")
FRAME_NAME = re.compile(r"^(?P<pid>-?\d+)_C(?P<camid>[1-9]\d*)_F(?P<frame>\d+)", re.IGNORECASE)


def load(root: str | os.PathLike, *, min_frames: int = 1, strict: bool = True) -> ParsedVideoDataset:
    """DukeMTMC-VideoReID at ``root``; tracklets shorter than ``min_frames`` are dropped (noted)."""
    base = find_layout(check_root(root, "duke-video"), SPLITS, LAYOUT_NAMES)
    report = VideoParseReport("duke-video", base)
    out = {s: read_split(base / s, s, report) if ensure_dir(base / s, s, report) else [] for s in SPLITS}
    for s in SPLITS:
        out[s] = drop_short(out[s], min_frames, s, report)
        if (base / s).is_dir():
            report.require_nonempty(s, out[s], base / s)
    return report.finish(out["train"], out["query"], out["gallery"], strict=strict)


def read_split(folder: Path, split: str, report: VideoParseReport) -> list[Tracklet]:
    """Tracklets of ``folder/<pid>/<tracklet>/`` in (pid, tracklet) order."""
    tracklets: list[Tracklet] = []
    pid_dirs, loose = subfolders(folder)
    if loose:
        report.warn(f"{folder}: {len(loose)} file(s) outside pid folders skipped, e.g. {loose[0]!r}")
    for pd in pid_dirs:
        if not pd.name.lstrip("-").isdigit():
            report.count("folder(s) whose name is not an integer pid, skipped", pd.path, error=False)
            continue
        pid = int(pd.name)
        for td in subfolders(pd.path)[0]:
            tracklets += _tracklet(td.path, pid, report)
    return tracklets


def _tracklet(folder: str, pid: int, report: VideoParseReport) -> list[Tracklet]:
    """The tracklet(s) of one folder: one per camera named in its frames (normally exactly one)."""
    by_cam: dict[int, list[str]] = {}
    numbers: list[int] = []
    for p in tracklet_frames(folder, report):
        m = FRAME_NAME.match(os.path.basename(p))
        if m is None:
            report.count("frame(s) not named '<pid>_C<camera>_F<frame>...' skipped", p, error=False)
            continue
        if int(m.group("pid")) != pid:
            report.count(f"frame(s) whose name's pid differs from their pid folder (kept under the folder's "
                         f"pid)", p)
        by_cam.setdefault(int(m.group("camid")) - 1, []).append(p)
        numbers.append(int(m.group("frame")))
    if len(by_cam) > 1:
        report.count("tracklet folder(s) spanning several cameras (split per camera)", folder)
    holes = missing_frame_numbers(numbers)
    if holes:
        report.count("tracklet(s) with missing frames", f"{folder} (F{holes[0]:04d}"
                     + (f" and {len(holes) - 1} more)" if len(holes) > 1 else ")"))
    return [Tracklet(tuple(frames), pid, cam) for cam, frames in sorted(by_cam.items())]
