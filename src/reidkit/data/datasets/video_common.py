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

from reidkit.data.records import Tracklet, VideoDataset, relabel_tracklets

from .common import ParseReport, list_files, split_images

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
        """Record one occurrence of the problem ``what`` (e.g. "empty tracklet folder(s)")."""
        self._counted.setdefault((what, error), []).append(example)

    def require_nonempty(self, split: str, tracklets: Sequence, where: str | os.PathLike) -> None:
        if not tracklets:
            self.error(f"{os.fspath(where)}: {split} split is empty (no usable tracklets)")

    def flush_counts(self) -> None:
        for (what, error), examples in self._counted.items():
            shown = ", ".join(examples[:EXAMPLES]) + (", ..." if len(examples) > EXAMPLES else "")
            (self.error if error else self.warn)(f"{len(examples)} {what}: {shown}")
        self._counted.clear()

    def finish(self, train: list[Tracklet], query: list[Tracklet], gallery: list[Tracklet], *,  # type: ignore[override]
               strict: bool, relabel_train: bool = True) -> ParsedVideoDataset:
        from reidkit.data.records import DatasetError

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
    """Image files of one tracklet folder, in natural (temporal) order; an empty folder is counted."""
    frames = split_images(list_files(folder), report, folder)
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
