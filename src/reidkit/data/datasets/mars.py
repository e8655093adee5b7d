"""MARS (Zheng et al., ECCV 2016): 1,261 ids, 6 cameras, tracklets from a detector + tracker.

Layout (flat, or inside ``MARS/`` / ``mars/``)::

    bbox_train/0001/0001C1T0001F001.jpg   509,914 frames   -> train (625 ids, 8,298 tracklets, relabelled)
    bbox_test/0000/...  bbox_test/00-1/... 681,089 frames  -> query (1,980) + gallery (9,330)
    info/train_name.txt  test_name.txt     one frame name per line, the order the track rows index
    info/tracks_train_info.mat             'track_train_info': rows (start, end, pid, camera), 1-based
    info/tracks_test_info.mat              'track_test_info'   inclusive frame-index ranges
    info/query_IDX.mat                     'query_IDX': 1-based rows of track_test_info that are queries

Frame name ``0001C1T0001F001.jpg``: pid 0001 (``00-1`` junk, ``0000`` distractor), camera 1, tracklet
0001, frame 001; it lives in the folder named by its first four characters. As in the field, junk
tracklets (pid -1) are dropped (counted in ``notes``), distractors (pid 0) stay in the gallery, query
tracklets are the ``query_IDX`` rows and the gallery is the rest of the test tracks.

The info files are checked against the folders: a listed frame missing on disk, a row whose range
falls outside the name list, a frame whose name disagrees with its row's pid or camera, and query
rows outside the test tracks are errors with counts (``strict=False`` keeps every frame that exists).
Images on disk that no list names are a warning.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from reidkit.data.records import DatasetError, Tracklet

from .common import check_root, find_layout
from .video_common import ParsedVideoDataset, VideoParseReport, drop_short

LAYOUT_NAMES = ("MARS", "mars", "MARS-v160809", "Mars")
INFO_FILES = {"train_names": "train_name.txt", "test_names": "test_name.txt",
              "train_tracks": "tracks_train_info.mat", "test_tracks": "tracks_test_info.mat",
              "query": "query_IDX.mat"}
MAT_KEYS = {"train_tracks": "track_train_info", "test_tracks": "track_test_info", "query": "query_IDX"}


def load(root: str | os.PathLike, *, min_frames: int = 1, strict: bool = True) -> ParsedVideoDataset:
    """MARS at ``root``; tracklets shorter than ``min_frames`` are dropped (noted)."""
    base = find_layout(check_root(root, "mars"), ("bbox_train", "bbox_test", "info"), LAYOUT_NAMES)
    report = VideoParseReport("mars", base)
    info = base / "info"
    missing = [str(info / f) for f in INFO_FILES.values() if not (info / f).is_file()]
    missing += [str(base / d) for d in ("bbox_train", "bbox_test") if not (base / d).is_dir()]
    if missing:
        # Nothing can be matched without the lists and folders: one error naming every missing piece.
        report.error(f"missing {', '.join(missing)} (MARS needs bbox_train/, bbox_test/ and info/ with "
                     f"{', '.join(INFO_FILES.values())})")
        return report.finish([], [], [], strict=strict)
    try:
        train_rows = read_tracks(info / INFO_FILES["train_tracks"], MAT_KEYS["train_tracks"])
        test_rows = read_tracks(info / INFO_FILES["test_tracks"], MAT_KEYS["test_tracks"])
        query_idx = read_index(info / INFO_FILES["query"], MAT_KEYS["query"])
    except DatasetError as e:
        report.error(str(e))
        return report.finish([], [], [], strict=strict)

    train = tracks(base / "bbox_train", read_names(info / INFO_FILES["train_names"]), train_rows,
                   "train", info / INFO_FILES["train_tracks"], report)
    test = tracks(base / "bbox_test", read_names(info / INFO_FILES["test_names"]), test_rows,
                  "test", info / INFO_FILES["test_tracks"], report)
    bad = [int(i) for i in query_idx if not 1 <= i <= len(test_rows)]
    if bad:
        report.error(f"{info / INFO_FILES['query']}: {len(bad)} query row(s) outside the {len(test_rows)} test "
                     f"tracks, e.g. {bad[:3]}")
    is_query = set(int(i) - 1 for i in query_idx) - {i - 1 for i in bad}
    query = [t for i, t in test.items() if i in is_query]
    gallery = [t for i, t in test.items() if i not in is_query]
    train_list = list(train.values())
    junk = {}
    for split, ts in (("train", train_list), ("query", query), ("gallery", gallery)):
        junk[split] = sum(t.pid == -1 for t in ts)
        if junk[split]:
            report.note(f"{split}: dropped {junk[split]} junk tracklet(s) (pid -1)")
    train_list, query, gallery = ([t for t in ts if t.pid != -1] for ts in (train_list, query, gallery))
    if any(t.pid == 0 for t in query):
        report.warn(f"{info / INFO_FILES['query']}: {sum(t.pid == 0 for t in query)} query tracklet(s) are "
                    f"distractors (pid 0); they have no true match")
    out = {}
    for split, ts in (("train", train_list), ("query", query), ("gallery", gallery)):
        out[split] = drop_short(ts, min_frames, split, report)
        report.require_nonempty(split, out[split], base / ("bbox_train" if split == "train" else "bbox_test"))
    return report.finish(out["train"], out["query"], out["gallery"], strict=strict)


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 files are HDF5
        raise DatasetError(f"{path}: MATLAB v7.3 (HDF5) file; save it with -v7 (scipy reads v4-v7)") from None
    except Exception as e:  # scipy raises ValueError, TypeError, OSError... on a damaged file
        raise DatasetError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from None


def _array(path: Path, key: str) -> np.ndarray:
    mat = _loadmat(path)
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path}: no variable {key!r} (found {', '.join(found) or 'none'})")
    arr = np.asarray(mat[key])
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.all(np.isfinite(arr))):
        raise DatasetError(f"{path}: {key!r} must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise DatasetError(f"{path}: {key!r} holds non-integer values")
    return arr.astype(np.int64)


def read_tracks(path: Path, key: str) -> np.ndarray:
    """``(N, 4)`` int64 rows ``(start, end, pid, camera)`` with 1-based inclusive frame indices."""
    arr = _array(path, key)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DatasetError(f"{path}: {key!r} must be an N x 4 table (start, end, pid, camera), "
                           f"got shape {arr.shape}")
    return arr


def read_index(path: Path, key: str) -> np.ndarray:
    """A 1-based index vector (any of 1 x N, N x 1, N)."""
    arr = _array(path, key)
    if arr.ndim > 2 or (arr.ndim == 2 and min(arr.shape) > 1):
        raise DatasetError(f"{path}: {key!r} must be a vector of row indices, got shape {arr.shape}")
    return arr.reshape(-1)


def read_names(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def name_pid_camera(name: str) -> tuple[int, int] | None:
    """``(pid, camera 1-based)`` from ``0001C1T0001F001.jpg`` (``00-1`` is -1), or None.

    The readable reference of the per-frame check in ``tracks`` (``name.startswith(row_prefix(pid, cam))``).
    """
    if len(name) < 7 or name[4] != "C" or not name[5].isdigit() or name[6] != "T":
        return None
    head = name[:4]
    if head == "00-1":
        return -1, int(name[5])
    return (int(head), int(name[5])) if head.isdigit() else None


def row_prefix(pid: int, cam: int) -> str:
    """How the names of a track row's frames begin: ``0001C1T`` (pid 1, camera 1), ``00-1C2T`` (junk)."""
    return f"{'00-1' if pid == -1 else f'{pid:04d}'}C{cam}T"


def tracks(folder: Path, names: list[str], rows: np.ndarray, split: str, info_path: Path,
           report: VideoParseReport) -> dict[int, Tracklet]:
    """``{row index: Tracklet}`` of ``rows`` over ``names``; frames checked against ``folder``."""
    # MARS lists 1.19M frames: set operations and plain strings, no pathlib and no per-frame branching.
    sep = os.sep
    on_disk: set[str] = set()
    with os.scandir(folder) as it:
        subdirs = sorted(e.name for e in it if e.is_dir())
    for d in subdirs:
        with os.scandir(os.path.join(folder, d)) as it:
            on_disk.update(f"{d}{sep}{e.name}" for e in it if e.is_file())
    prefix = os.fspath(folder) + sep
    rel = [f"{n[:4]}{sep}{n}" for n in names]      # where each listed frame should be
    listed = set(rel)
    unlisted = on_disk - listed
    if unlisted:
        report.warn(f"{folder}: {len(unlisted)} image(s) not named in info/{split}_name.txt (not used), "
                    f"e.g. {min(unlisted)!r}")
    missing = listed - on_disk
    out: dict[int, Tracklet] = {}
    for i, (start, end, pid, cam) in enumerate(rows.tolist()):
        where = f"{info_path.name} row {i + 1} ({start}..{end})"
        if not (1 <= start <= end <= len(names)):
            what = "empty tracklet(s) (start > end)" if start > end else \
                f"track row(s) outside the {len(names)} names of info/{split}_name.txt"
            report.count(f"{split}: {{n}} {what}", where)
            continue
        if cam < 1:
            report.count(f"{split}: {{n}} track row(s) with a camera number below 1", where)
            continue
        expected = row_prefix(pid, cam)
        disagree = sum(1 for n in names[start - 1:end] if not n.startswith(expected))
        chunk = rel[start - 1:end]
        if missing and not missing.isdisjoint(chunk):
            frames = [prefix + r for r in chunk if r not in missing]
        else:
            frames = [prefix + r for r in chunk]
        absent = len(chunk) - len(frames)
        if disagree:
            report.count(f"{split}: {{n}} track row(s) whose frame names disagree with the row's pid/camera",
                         f"{where}: {disagree} frame(s)")
        if absent and frames:
            report.count(f"{split}: {{n}} tracklet(s) with frames listed in info but missing from {folder.name}/",
                         f"{where}: {absent} frame(s)")
        if not frames:
            report.count(f"{split}: {{n}} empty tracklet(s) (no frame on disk)", where)
            continue
        out[i] = Tracklet(tuple(frames), int(pid), int(cam) - 1)
    return out
