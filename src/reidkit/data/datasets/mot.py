"""MOTChallenge tracks -> a tracklet folder: from tracking output to a re-ID gallery.

Input: the frames of one sequence (``img1/000001.jpg``..., the frame number is the file name) and a
MOTChallenge text file, one box per line::

    frame, id, bb_left, bb_top, bb_width, bb_height, conf, ...        tracker output / det.txt
    frame, id, bb_left, bb_top, bb_width, bb_height, flag, class, visibility      gt/gt.txt (MOT16-20)
    frame, id, bb_left, bb_top, bb_width, bb_height, 1, -1, -1, -1                gt/gt.txt (MOT15)

Ground truth (``gt=True``, the default for a file named ``gt.txt``) keeps rows with flag 1, a class in
``classes`` (1 = pedestrian, the MOTChallenge evaluation's choice) and visibility >= ``min_visibility``;
tracker output keeps rows with conf >= ``min_conf``. What is left out is counted in the notes.

Several sequences convert in one go (``convert_sequences``): a folder of sequences (``MOT17/train``)
or a folder of tracker results ``<sequence>.txt`` with the sequences' frames; each sequence is a
camera, and pids are offset per sequence unless the ids are global (multi-camera ground truth).

Each track becomes a tracklet (``max_gap``: a track is cut where more than ``max_gap`` frames are
missing between two of its boxes, so one tracklet never spans an occlusion the tracker bridged).
Crops are cut from each frame, decoded once, with the boxes clipped to the image, and written as the
generic tracklet layout read by ``load_dataset("tracklets", out)``::

    out/<split>/<pid>/<camera>/<first frame>/<frame>.jpg       pid = track id + pid_offset
    out/<camera>.crops.csv     path,pid,track_id,tracklet,frame,x,y,w,h,conf: every crop and its clipped box
    out/<camera>.problems.txt  every problem found, one per line (when there are any)

Bad input: malformed rows (fewer than 6 fields, a non-number, a frame below 1, a non-integer frame or id,
a box of width or height <= 0, NaN), two boxes of one track in one frame, and rows whose frame image is
missing are errors with counts, raised before any crop is cut (``strict=True``); ``strict=False`` skips
them and lists every one in the problems file. Boxes entirely outside the image are skipped and counted.
"""
from __future__ import annotations

import csv
import io
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from reidkit.data.images import is_image_file, load_rgb
from reidkit.data.records import DatasetError

from .video_common import EXAMPLES

SPLITS = ("train", "query", "gallery")


class MotError(DatasetError):
    """A MOTChallenge file or sequence that cannot be converted (names the file and counts the problems)."""


@dataclass(frozen=True, slots=True)
class Box:
    frame: int
    track_id: int
    x: float
    y: float
    w: float
    h: float
    conf: float
    line: int                       # 1-based line number in the text file


@dataclass
class MotTracks:
    """The usable boxes of a MOT file plus everything that was left out, with the reason."""

    path: Path
    boxes: list[Box]
    errors: dict[str, list[str]] = field(default_factory=dict)     # kind -> every offending line
    notes: list[str] = field(default_factory=list)

    def error_lines(self) -> list[str]:
        """One line per problem kind: the count and the first examples."""
        out = []
        for kind, items in self.errors.items():
            shown = "; ".join(items[:EXAMPLES]) + ("; ..." if len(items) > EXAMPLES else "")
            out.append(f"{self.path}: {len(items)} {kind}: {shown}")
        return out


def read_mot(path: str | os.PathLike, *, gt: bool | None = None, classes: Sequence[int] = (1,),
             min_visibility: float = 0.0, min_conf: float | None = None) -> MotTracks:
    """Parse a MOTChallenge file; never raises on bad rows (they go to ``errors``), only on an unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise MotError(f"{path}: MOT tracks file not found")
    gt = path.name.lower() == "gt.txt" if gt is None else gt
    result = MotTracks(path, [])
    malformed, duplicate = [], []
    ignored = low_conf = other_class = occluded = 0
    seen: set[tuple[int, int]] = set()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise MotError(f"{path}: cannot read the MOT tracks file ({e})") from None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")] if "," in line else line.split()
        try:
            if len(fields) < 6:
                raise ValueError("fewer than 6 fields")
            nums = [float(f) for f in fields]
            if any(math.isnan(v) or math.isinf(v) for v in nums[:6]):
                raise ValueError("NaN or inf")
            frame, tid = nums[0], nums[1]
            if frame != int(frame) or tid != int(tid):
                raise ValueError("frame and id must be integers")
            if frame < 1:
                raise ValueError("frame numbers start at 1")
            if tid < 0:
                raise ValueError("no track id (id < 0: detections, not tracks)")
            if nums[4] <= 0 or nums[5] <= 0:
                raise ValueError("box width and height must be > 0")
        except ValueError as e:
            malformed.append(f"line {lineno} {line[:60]!r} ({e})")
            continue
        conf = nums[6] if len(nums) > 6 else 1.0
        if gt:
            if len(nums) > 6 and conf == 0:
                ignored += 1
                continue
            # MOT15 ground truth has no class or visibility: those columns hold -1 (world coordinates)
            if len(nums) > 7 and nums[7] != -1 and int(nums[7]) not in classes:
                other_class += 1
                continue
            if len(nums) > 8 and nums[8] != -1 and nums[8] < min_visibility:
                occluded += 1
                continue
        elif min_conf is not None and conf < min_conf:
            low_conf += 1
            continue
        key = (int(frame), int(tid))
        if key in seen:
            duplicate.append(f"line {lineno} (frame {key[0]}, id {key[1]})")
            continue
        seen.add(key)
        result.boxes.append(Box(int(frame), int(tid), *nums[2:6], conf, lineno))
    if malformed:
        result.errors["malformed row(s) (expected frame,id,x,y,w,h,...)"] = malformed
    if duplicate:
        result.errors["duplicate row(s): a second box of the same track in the same frame"] = duplicate
    for count, what in ((ignored, "ground-truth row(s) flagged 0 (ignore)"),
                        (other_class, f"ground-truth row(s) of a class other than {tuple(classes)}"),
                        (occluded, f"ground-truth row(s) with visibility < {min_visibility}"),
                        (low_conf, f"row(s) with conf < {min_conf}")):
        if count:
            result.notes.append(f"{path.name}: left out {count} {what}")
    return result


def frame_files(folder: str | os.PathLike) -> dict[int, str]:
    """``{frame number: path}`` of a MOT frames folder (``000001.jpg`` -> 1)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MotError(f"{folder}: frames folder not found (a MOT sequence keeps them in img1/)")
    out = {}
    with os.scandir(folder) as it:
        for e in it:
            stem = os.path.splitext(e.name)[0]
            if e.is_file() and is_image_file(e.name) and stem.isdigit():
                out[int(stem)] = e.path
    if not out:
        raise MotError(f"{folder}: no frame images named by their frame number (e.g. 000001.jpg)")
    return out


def find_sequence(source: str | os.PathLike, frames: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(tracks file, frames folder)`` from a MOT sequence folder (``gt/gt.txt``, ``img1/``) or a tracks file."""
    source = Path(source).expanduser()
    if source.is_dir():
        tracks = source / "gt" / "gt.txt"
        if not tracks.is_file():
            raise MotError(f"{source}: no gt/gt.txt in this sequence folder; pass the tracker's output file "
                           f"instead (with --frames {source / 'img1'})")
        return tracks, Path(frames).expanduser() if frames else source / "img1"
    if not source.is_file():
        raise MotError(f"{source}: neither a MOT sequence folder nor a tracks file")
    if frames:
        return source, Path(frames).expanduser()
    for guess in (source.parent / "img1", source.parent.parent / "img1"):
        if guess.is_dir():
            return source, guess
    raise MotError(f"{source}: no img1/ next to the tracks file; pass the frames folder (--frames)")


@dataclass
class MotConversion:
    out: Path
    camera: str
    split: str
    tracks: int = 0
    tracklets: int = 0
    crops: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: Path | None = None
    problems_file: Path | None = None
    seconds: float = 0.0
    max_track_id: int = 0           # the largest track id kept (for pid offsets over several sequences)


def segments(boxes: list[Box], max_gap: int | None) -> list[list[Box]]:
    """One track's boxes (any order) cut into tracklets where more than ``max_gap`` frames are missing."""
    boxes = sorted(boxes, key=lambda b: b.frame)
    out = [[boxes[0]]]
    for prev, b in zip(boxes, boxes[1:]):
        if max_gap is not None and b.frame - prev.frame - 1 > max_gap:
            out.append([])
        out[-1].append(b)
    return out


def clip_box(b: Box, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Pixel box ``(x0, y0, x1, y1)`` of ``b`` clipped to the image, or None when nothing is left."""
    x0, y0 = max(0, round(b.x)), max(0, round(b.y))
    x1, y1 = min(width, round(b.x + b.w)), min(height, round(b.y + b.h))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def mot_to_tracklets(source: str | os.PathLike, out: str | os.PathLike, *, frames: str | os.PathLike | None = None,
                     camera: str | None = None, split: str = "gallery", max_gap: int | None = None,
                     min_frames: int = 1, pid_offset: int = 0, gt: bool | None = None,
                     classes: Sequence[int] = (1,), min_visibility: float = 0.0, min_conf: float | None = None,
                     strict: bool = True, overwrite: bool = False, dry_run: bool = False, jpeg_quality: int = 95,
                     workers: int = 1, on_progress: Callable[[int], None] | None = None) -> MotConversion:
    """Cut the crops of every track in ``source`` (a MOT sequence folder or a tracks file) into ``out``.

    ``camera`` names the camera folder (default: the sequence folder's name). Several sequences can go
    into one ``out`` as different cameras; give each a ``pid_offset`` when their track ids would collide.
    ``dry_run`` checks everything and writes nothing.
    """
    t0 = time.perf_counter()
    if split not in SPLITS:
        raise MotError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if pid_offset < 0:
        raise MotError(f"pid_offset must be >= 0, got {pid_offset}")
    if max_gap is not None and max_gap < 0:
        raise MotError(f"max_gap must be >= 0 (frames missing between two boxes of a tracklet), got {max_gap}")
    tracks_path, frames_dir = find_sequence(source, frames)
    camera = camera or (Path(source).name if Path(source).is_dir() else frames_dir.parent.name or "cam0")
    if not camera or os.sep in camera or camera in (".", ".."):
        raise MotError(f"camera name {camera!r} cannot be a folder name")
    parsed = read_mot(tracks_path, gt=gt, classes=classes, min_visibility=min_visibility, min_conf=min_conf)
    files = frame_files(frames_dir)
    missing = [f"line {b.line} (frame {b.frame})" for b in parsed.boxes if b.frame not in files]
    if missing:
        parsed.errors[f"row(s) whose frame image is missing from {frames_dir}"] = missing
        parsed.boxes = [b for b in parsed.boxes if b.frame in files]
    sizes, unreadable = _frame_sizes(files, {b.frame for b in parsed.boxes})
    if unreadable:
        parsed.errors["frame image(s) that cannot be opened"] = unreadable
        parsed.boxes = [b for b in parsed.boxes if b.frame in sizes]
    outside = [f"line {b.line} (frame {b.frame}, id {b.track_id})" for b in parsed.boxes
               if clip_box(b, *sizes[b.frame]) is None]
    if outside:  # a tracker may predict a box beyond the border: skipped and listed, not an error
        parsed.boxes = [b for b in parsed.boxes if clip_box(b, *sizes[b.frame]) is not None]
    result = MotConversion(out=Path(out), camera=camera, split=split, notes=list(parsed.notes))
    result.problems = parsed.error_lines()
    if outside:
        result.problems.append(f"{tracks_path}: {len(outside)} box(es) entirely outside the image, skipped: "
                               + "; ".join(outside[:EXAMPLES]) + ("; ..." if len(outside) > EXAMPLES else ""))
    if strict and parsed.errors:
        raise MotError("; ".join(result.problems) + " (strict=False / --no-strict skips them and lists every one)")
    if not parsed.boxes:
        raise MotError(f"{tracks_path}: no usable boxes" + (f" ({'; '.join(result.problems)})" if result.problems
                                                           else ""))

    by_track: dict[int, list[Box]] = {}
    for b in parsed.boxes:
        by_track.setdefault(b.track_id, []).append(b)
    plan: list[tuple[int, str, list[Box]]] = []     # (pid, tracklet folder name, boxes in frame order)
    short = 0
    for tid in sorted(by_track):
        for seg in segments(by_track[tid], max_gap):
            if len(seg) < min_frames:
                short += 1
                continue
            plan.append((tid + pid_offset, f"{seg[0].frame:06d}", seg))
    result.tracks = len(by_track)
    result.max_track_id = max(by_track)
    result.tracklets = len(plan)
    if max_gap is not None:
        result.notes.append(f"{len(by_track)} track(s) cut into {len(plan) + short} tracklet(s) at gaps of more "
                            f"than {max_gap} frame(s)")
    if short:
        result.notes.append(f"left out {short} tracklet(s) shorter than min_frames={min_frames}")
    out = Path(out)
    targets = [out / split / f"{pid:06d}" / camera for pid in sorted({p for p, _, _ in plan})]
    existing = [p for p in targets if p.exists()] + [p for p in (out / f"{camera}.crops.csv",) if p.exists()]
    if existing and not overwrite:
        raise MotError(f"{out}: already holds tracklets of camera {camera!r} ({existing[0]}); pass overwrite=True "
                       f"(--overwrite) to replace them")
    if dry_run:
        result.crops = sum(len(seg) for _, _, seg in plan)
        result.seconds = time.perf_counter() - t0
        return result
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    rows = _cut(plan, files, out, split, camera, jpeg_quality, workers, result, on_progress)
    from reidkit.utils.io import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "pid", "track_id", "tracklet", "frame", "x", "y", "w", "h", "conf"])
    w.writerows(rows)
    result.manifest = atomic_write_text(out / f"{camera}.crops.csv", buf.getvalue())
    all_problems = [f"{parsed.path}: {kind}: {item}" for kind, items in parsed.errors.items() for item in items]
    all_problems += [f"{tracks_path}: box entirely outside the image, skipped: {item}" for item in outside]
    problems_file = out / f"{camera}.problems.txt"
    if all_problems:
        result.problems_file = atomic_write_text(problems_file, "".join(p + "\n" for p in all_problems))
    elif problems_file.exists():
        problems_file.unlink()
    result.seconds = time.perf_counter() - t0
    return result


def _frame_sizes(files: dict[int, str], needed: set[int]) -> tuple[dict[int, tuple[int, int]], list[str]]:
    """``{frame: (width, height)}`` read from the image headers (nothing is decoded), and the unreadable."""
    from PIL import Image

    sizes, bad = {}, []
    for f in sorted(needed):
        try:
            with Image.open(files[f]) as im:
                sizes[f] = im.size
        except Exception as e:  # PIL raises many types on a damaged header
            bad.append(f"{files[f]} ({type(e).__name__})")
    return sizes, bad


def _cut(plan, files: dict[int, str], out: Path, split: str, camera: str, quality: int, workers: int,
         result: MotConversion, on_progress) -> list[list]:
    """Decode every needed frame once, cut all its boxes, write the crops; returns the manifest rows.

    A frame that does not decode raises ``ImageError`` naming the file (``load_rgb``).
    """
    jobs: dict[int, list[tuple[Box, Path, int, str]]] = {}
    for pid, name, seg in plan:
        folder = out / split / f"{pid:06d}" / camera / name
        folder.mkdir(parents=True, exist_ok=True)
        for b in seg:
            jobs.setdefault(b.frame, []).append((b, folder / f"{b.frame:06d}.jpg", pid, name))

    def one_frame(frame: int) -> tuple[list[list], int]:
        img = load_rgb(files[frame])
        rows, clipped = [], 0
        for b, path, pid, name in jobs[frame]:
            box = clip_box(b, *img.size)
            if box is None:  # only when the decoded size differs from the header's (EXIF rotation)
                raise MotError(f"{files[frame]}: decoded size {img.size} differs from its header; box of line "
                               f"{b.line} falls outside")
            clipped += box != (round(b.x), round(b.y), round(b.x + b.w), round(b.y + b.h))
            img.crop(box).save(path, format="JPEG", quality=quality)
            x0, y0, x1, y1 = box
            rows.append([os.path.relpath(path, out), pid, b.track_id, name, frame, x0, y0, x1 - x0, y1 - y0, b.conf])
        return rows, clipped

    rows: list[list] = []
    clipped = 0
    with ThreadPoolExecutor(max(1, workers)) as ex:
        for r, c in ex.map(one_frame, sorted(jobs)):
            rows += r
            clipped += c
            if on_progress is not None:
                on_progress(1)
    result.crops = len(rows)
    if clipped:
        result.notes.append(f"{clipped} box(es) clipped to the image")
    rows.sort(key=lambda r: (r[1], r[3], r[4]))
    return rows


def find_sequences(source: str | os.PathLike, frames: str | os.PathLike | None = None) -> list[tuple[str, Path, Path]]:
    """``[(camera, tracks file, frames folder)]`` of every sequence ``source`` holds, in name order.

    ``source`` is one sequence (a folder with ``gt/gt.txt``, or a tracks file), a folder of sequences
    (``MOT17/train``: each sub-folder's ``gt/gt.txt`` and ``img1/``), or a folder of tracker results
    ``<sequence>.txt`` (the MOTChallenge submission layout) with ``frames`` = the folder of sequences.
    The camera is the sequence's name.
    """
    source = Path(source).expanduser()
    if source.is_file() or (source / "gt" / "gt.txt").is_file():
        tracks, frames_dir = find_sequence(source, frames)
        return [(source.name if source.is_dir() else frames_dir.parent.name or "cam0", tracks, frames_dir)]
    if not source.is_dir():
        raise MotError(f"{source}: neither a MOT sequence, a folder of sequences nor a tracks file")
    results = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() == ".txt")
    if results:  # tracker results, one file per sequence
        if frames is None:
            raise MotError(f"{source}: holds tracker results ({results[0].name}, ...); pass the folder of their "
                           f"sequences with --frames (e.g. MOT17/train)")
        seqs = Path(frames).expanduser()
        missing = [p.stem for p in results if not (seqs / p.stem / "img1").is_dir()]
        if missing:
            raise MotError(f"{seqs}: no img1/ for {len(missing)} result file(s) of {source}, e.g. {missing[:3]}")
        return [(p.stem, p, seqs / p.stem / "img1") for p in results]
    seqs = sorted(p for p in source.iterdir() if (p / "gt" / "gt.txt").is_file() and (p / "img1").is_dir())
    if not seqs:
        raise MotError(f"{source}: no MOT sequence found (a sequence has img1/ and gt/gt.txt; tracker output "
                       f"is a tracks file or a folder of <sequence>.txt files)")
    return [(p.name, p / "gt" / "gt.txt", p / "img1") for p in seqs]


def convert_sequences(source: str | os.PathLike, out: str | os.PathLike, *, frames: str | os.PathLike | None = None,
                      camera: str | None = None, global_ids: bool = False, pid_offset: int = 0,
                      dry_run: bool = False, **options) -> list[MotConversion]:
    """``mot_to_tracklets`` over every sequence of ``source`` (see ``find_sequences``) into one ``out``.

    Each sequence is a camera. Track ids of different sequences are different people unless
    ``global_ids`` (multi-camera ground truth with shared ids): pids are then offset per sequence, past
    the largest pid of the previous one, and ``<camera>.crops.csv`` keeps each crop's own track id.
    Every sequence is checked (a dry run) before any crop is written.
    """
    found = find_sequences(source, frames)
    if camera is not None:
        if len(found) > 1:
            raise MotError(f"{source}: holds {len(found)} sequences; --camera names one (each sequence is a camera)")
        found = [(camera, *found[0][1:])]
    plans, offset = [], pid_offset
    for cam, tracks, frames_dir in found:
        check = mot_to_tracklets(tracks, out, frames=frames_dir, camera=cam, pid_offset=offset, dry_run=True,
                                 **options)
        plans.append((cam, tracks, frames_dir, offset, check))
        if not global_ids:
            offset += check.max_track_id + 1
    if dry_run:
        return [check for *_, check in plans]
    return [mot_to_tracklets(tracks, out, frames=frames_dir, camera=cam, pid_offset=off, **options)
            for cam, tracks, frames_dir, off, _ in plans]

