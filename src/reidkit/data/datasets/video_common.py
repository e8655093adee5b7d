"""What the tracklet readers share: the parsed video dataset, a problem report that counts, frame order.

Tracklet readers follow the image readers' rules (``common.py``): ``strict=True`` raises one
``DatasetError`` listing every error, ``strict=False`` returns what could be read with every problem
in ``ds.problems``. Problems that repeat over thousands of tracklets (empty folders, missing frames)
are counted per kind and reported once, with the count and the first examples, so nothing is lost
silently and the message stays one line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from reidkit.data.images import is_image_file
from reidkit.data.records import DatasetError, Tracklet, VideoDataset, relabel_tracklets

from .common import ParseReport, check_root, find_layout, list_files

EXAMPLES = 3  # examples quoted per counted problem


@dataclass
class ParsedVideoDataset(VideoDataset):
    """A ``VideoDataset`` plus where it came from and how it was read (as ``ParsedDataset``)."""

    root: str = ""
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def frame_statistics(self) -> list[tuple[str, int, int, float, int]]:
        """Rows ``(split, num_frames, min_len, mean_len, max_len)`` (tracklet lengths in frames)."""
        return [(s, *tracklet_lengths(self.split(s))) for s in ("train", "query", "gallery")]


def tracklet_lengths(tracklets: Sequence[Tracklet]) -> tuple[int, int, float, int]:
    """``(num_frames, min_len, mean_len, max_len)`` of one split (zeros when empty)."""
    lengths = [len(t.frames) for t in tracklets]
    if not lengths:
        return 0, 0, 0.0, 0
    return sum(lengths), min(lengths), sum(lengths) / len(lengths), max(lengths)


class VideoParseReport(ParseReport):
    """``ParseReport`` for tracklets, with counted problems: ``count(kind, example)`` then one line each."""

    def __init__(self, name: str, root: str | os.PathLike):
        super().__init__(name, root)
        self._counted: dict[tuple[str, bool], list[str]] = {}

    def count(self, what: str, example: str, *, error: bool = True) -> None:
        """Record one occurrence of the problem ``what`` (e.g. "empty tracklet folder(s)"); the count goes
        in front, or where ``what`` says ``{n}``."""
        self._counted.setdefault((what, error), []).append(example)

    @property
    def has_errors(self) -> bool:
        """Errors so far, counted ones included (those become lines only at ``finish``)."""
        return bool(self.errors) or any(error for _, error in self._counted)

    def require_nonempty(self, split: str, tracklets: Sequence, where: str | os.PathLike) -> None:
        if not tracklets:
            self.error(f"{os.fspath(where)}: {split} split is empty (no usable tracklets)")

    def flush_counts(self) -> None:
        for (what, error), examples in self._counted.items():
            shown = ", ".join(examples[:EXAMPLES]) + (", ..." if len(examples) > EXAMPLES else "")
            head = what.replace("{n}", str(len(examples))) if "{n}" in what else f"{len(examples)} {what}"
            (self.error if error else self.warn)(f"{head}: {shown}")
        self._counted.clear()

    def finish(self, train: list[Tracklet], query: list[Tracklet], gallery: list[Tracklet], *,  # type: ignore[override]
               strict: bool, relabel_train: bool = True) -> ParsedVideoDataset:
        self.flush_counts()
        if strict and self.errors:
            raise DatasetError(f"{self.name} at {self.root}: " + "; ".join(self.errors))
        return ParsedVideoDataset(name=self.name, train=relabel_tracklets(train) if relabel_train else train,
                                  query=query, gallery=gallery, problems=self.errors + self.warnings,
                                  root=self.root, errors=list(self.errors), notes=list(self.notes))


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders ``2.jpg`` before ``10.jpg`` (frame numbers are not always zero-padded)."""
    return tuple(int(t) if t.isdigit() else t for t in _DIGITS.split(name))


def subfolders(folder: str | os.PathLike) -> tuple[list[os.DirEntry], list[str]]:
    """``(sub-folder entries in natural order, names of loose files)`` of ``folder``."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: natural_key(e.name))
    return [e for e in entries if e.is_dir()], [e.name for e in entries if not e.is_dir()]


def tracklet_frames(folder: str | os.PathLike, report: VideoParseReport) -> list[str]:
    """Image files of one tracklet folder, in natural (temporal) order; an empty folder is counted.

    Other files (``Thumbs.db``, ``.txt``) are skipped and counted once over all tracklets.
    """
    frames, others = [], 0
    for p in list_files(folder):
        if is_image_file(p):
            frames.append(p)
        else:
            others += 1
    if others:
        report.count("tracklet folder(s) with non-image files (skipped)", f"{os.fspath(folder)} ({others})",
                     error=False)
    if not frames:
        report.count("empty tracklet folder(s) (no images)", os.fspath(folder))
    frames.sort(key=lambda p: natural_key(os.path.basename(p)))
    return frames


def missing_frame_numbers(numbers: Sequence[int]) -> list[int]:
    """Frame numbers absent between the first and last of ``numbers`` (a hole in the tracklet)."""
    have = set(numbers)
    return [n for n in range(min(have), max(have) + 1) if n not in have] if have else []


def drop_short(tracklets: list[Tracklet], min_frames: int, split: str, report: VideoParseReport) -> list[Tracklet]:
    """Tracklets with at least ``min_frames`` frames; how many were dropped goes into the notes."""
    if min_frames <= 1:
        return tracklets
    kept = [t for t in tracklets if len(t.frames) >= min_frames]
    if len(kept) < len(tracklets):
        report.note(f"{split}: dropped {len(tracklets) - len(kept)} tracklet(s) shorter than "
                    f"min_frames={min_frames}")
    return kept


def ensure_dir(path: Path, split: str, report: VideoParseReport) -> bool:
    if path.is_dir():
        return True
    report.error(f"{path}: missing {split} folder")
    return False


# --- two-camera datasets with random splits (iLIDS-VID, PRID2011) -----------------------------------

NUM_SPLITS = 10
SPLITS_FORMAT = "reidkit.video_splits/1"


def make_splits(names: Sequence[str], seed: int, num_splits: int = NUM_SPLITS) -> list[dict[str, list[str]]]:
    """``num_splits`` random halves of ``names``: ``{"train": [...], "test": [...]}``, each sorted.

    Deterministic in ``seed`` and in the set of names (their order does not matter). With an odd
    number of ids the extra one goes to test.
    """
    names = sorted(names, key=natural_key)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_splits):
        perm = rng.permutation(len(names))
        half = len(names) // 2
        out.append({"train": sorted((names[i] for i in perm[:half]), key=natural_key),
                    "test": sorted((names[i] for i in perm[half:]), key=natural_key)})
    return out


def load_or_make_splits(path: Path, names: Sequence[str], seed: int, dataset: str,
                        report: VideoParseReport, save: bool = True) -> list[dict[str, list[str]]] | None:
    """The splits in ``path`` if it exists (checked against ``names``), else made from ``seed`` and saved
    (``save=False``: made in memory only, e.g. while the folders have errors).

    The file is ``{"format", "dataset", "seed", "splits": [{"train": [...], "test": [...]}, ...]}``; a bare
    list of such splits is read too. Returns None after reporting an
    error when the file cannot be used.
    """
    import json

    from reidkit.utils.io import save_json

    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            report.error(f"{path}: not a readable splits JSON file ({e})")
            return None
        splits = data.get("splits") if isinstance(data, dict) else data
        ok = isinstance(splits, list) and splits and all(
            isinstance(s, dict) and all(isinstance(s.get(k), list) for k in ("train", "test")) for s in splits)
        if not ok:
            report.error(f"{path}: expected {{'splits': [{{'train': [...], 'test': [...]}}, ...]}}")
            return None
        known = set(names)
        for i, s in enumerate(splits):
            train, test = [str(n) for n in s["train"]], [str(n) for n in s["test"]]
            unknown = [n for n in train + test if n not in known]
            if unknown:
                report.error(f"{path}: split {i} names {len(unknown)} id(s) not found in both cameras, "
                             f"e.g. {unknown[:3]}")
            if set(train) & set(test):
                report.error(f"{path}: split {i} has {len(set(train) & set(test))} id(s) in both train and test")
            absent = known - set(train) - set(test)
            if absent:
                report.error(f"{path}: split {i} leaves out {len(absent)} of the {len(known)} usable id(s), e.g. "
                             f"{sorted(absent, key=natural_key)[:3]} (delete the file to remake the splits)")
            s["train"], s["test"] = train, test
        report.note(f"splits read from {path}")
        return splits
    splits = make_splits(names, seed)
    if not save:
        report.note(f"{len(splits)} random splits made with seed {seed}, not saved (the folders have errors)")
        return splits
    try:
        save_json(path, {"format": SPLITS_FORMAT, "dataset": dataset, "seed": seed, "ids": len(names),
                         "splits": splits})
        report.note(f"{len(splits)} random splits of {len(names)} ids made with seed {seed}, saved to {path}")
    except OSError as e:
        report.warn(f"{path}: could not save the splits ({e.strerror}); they are remade from seed {seed} "
                    f"each time")
    return splits


def load_two_camera(root: str | os.PathLike, name: str, cameras: tuple[str, str], layout_names: tuple[str, ...],
                    person: re.Pattern, *, split_id: int, seed: int, split_file: str | os.PathLike | None,
                    min_frames: int, strict: bool, max_pid: int | None = None) -> ParsedVideoDataset:
    """The iLIDS-VID / PRID2011 protocol: one tracklet per person and camera; ids seen by both cameras
    (with >= ``min_frames`` frames in each, and pid <= ``max_pid``) are halved at random into train and
    test (10 splits, JSON); train = both cameras of the train ids, query = first camera of the test ids,
    gallery = second camera.
    """
    if not 0 <= split_id < NUM_SPLITS:
        raise DatasetError(f"{root}: {name} split_id must be 0..{NUM_SPLITS - 1}, got {split_id}")
    base = find_layout(check_root(root, name), cameras, layout_names)
    report = VideoParseReport(name, base)
    per_cam: list[dict[str, Tracklet]] = []
    for camid, cam in enumerate(cameras):
        found: dict[str, Tracklet] = {}
        if ensure_dir(base / cam, cam, report):
            dirs, loose = subfolders(base / cam)
            if loose:
                report.warn(f"{base / cam}: {len(loose)} file(s) outside person folders skipped, e.g. {loose[0]!r}")
            for d in dirs:
                m = person.fullmatch(d.name)
                if m is None:
                    report.count(f"folder(s) not named like a person ({person.pattern}), skipped", d.path, error=False)
                    continue
                frames = tracklet_frames(d.path, report)
                if frames:
                    found[d.name] = Tracklet(tuple(frames), int(m.group(1)), camid)
        per_cam.append(found)
    if report.errors:  # a camera folder is missing
        return report.finish([], [], [], strict=strict)
    both = sorted(set(per_cam[0]) & set(per_cam[1]), key=natural_key)
    if max_pid is not None:
        both = [n for n in both if per_cam[0][n].pid <= max_pid]
    eligible = [n for n in both if min(len(per_cam[0][n].frames), len(per_cam[1][n].frames)) >= min_frames]
    left = len(both) - len(eligible)
    report.note(f"{len(eligible)} ids in both cameras"
                + (f" with >= {min_frames} frames each ({left} with fewer left out)" if left else ""))
    if len(eligible) < 2:
        report.error(f"{base}: {len(eligible)} id(s) seen by both {cameras[0]} and {cameras[1]}; a split needs >= 2")
        return report.finish([], [], [], strict=strict)
    path = Path(split_file).expanduser() if split_file else base / f"splits_{name}_seed{seed}.json"
    splits = load_or_make_splits(path, eligible, seed, name, report, save=not report.has_errors)
    if splits is None or report.errors:
        return report.finish([], [], [], strict=strict)
    if split_id >= len(splits):
        report.error(f"{path}: has {len(splits)} split(s); split_id {split_id} does not exist")
        return report.finish([], [], [], strict=strict)
    split = splits[split_id]
    train = [per_cam[c][n] for n in split["train"] for c in (0, 1)]
    query = [per_cam[0][n] for n in split["test"]]
    gallery = [per_cam[1][n] for n in split["test"]]
    report.note(f"split {split_id}: {len(split['train'])} train ids, {len(split['test'])} test ids "
                f"(query {cameras[0]}, gallery {cameras[1]})")
    return report.finish(train, query, gallery, strict=strict)
