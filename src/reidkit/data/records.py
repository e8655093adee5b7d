"""Dataset records: what every dataset parser produces and every later stage consumes.

A record is one image of one person seen by one camera: ``(path, pid, camid)``.
Parsers (``reidkit.data.datasets``) turn a folder into records; loaders turn records into
tensors. Nothing here opens an image.

Conventions (those of Market-1501 and the tools built on it):
  * ``pid`` is the identity label. ``-1`` is junk (never evaluated), ``0`` in Market-1501 is a
    distractor that stays in the gallery. Training sets are relabelled to ``0..num_ids-1``.
  * ``camid`` is 0-based. ``-1`` means "camera unknown" (the no-camera evaluation protocol).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence


class DatasetError(ValueError):
    """A dataset folder, file list or image that cannot be used, with the path and the problem."""


@dataclass(frozen=True, slots=True)
class Record:
    path: str
    pid: int
    camid: int


@dataclass
class ReIDDataset:
    """Three splits of records, plus any problems found while parsing (kept, never lost)."""

    name: str
    train: list[Record] = field(default_factory=list)
    query: list[Record] = field(default_factory=list)
    gallery: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Record]:
        if name not in ("train", "query", "gallery"):
            raise DatasetError(f"{self.name}: unknown split {name!r}; expected train, query or gallery")
        return getattr(self, name)

    def statistics(self) -> list[tuple[str, int, int, int]]:
        """Rows ``(split, num_ids, num_images, num_cameras)``: the table every toolkit prints."""
        return [(s, *split_statistics(self.split(s))) for s in ("train", "query", "gallery")]


def split_statistics(records: Sequence[Record]) -> tuple[int, int, int]:
    """``(num_ids, num_images, num_cameras)`` of one split."""
    return (len({r.pid for r in records}), len(records), len({r.camid for r in records}))


def relabel(records: Iterable[Record]) -> list[Record]:
    """Map pids to ``0..num_ids-1`` in order of first sorted appearance (deterministic)."""
    records = list(records)
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [Record(r.path, mapping[r.pid], r.camid) for r in records]


@dataclass(frozen=True, slots=True)
class Tracklet:
    """One tracklet: the frames of one person seen by one camera, in temporal order.

    ``frames`` are image paths (never opened here). The same pid / camid conventions as ``Record``.
    """

    frames: tuple[str, ...]
    pid: int
    camid: int

    def __post_init__(self) -> None:
        if not self.frames:
            raise DatasetError(f"empty tracklet (pid {self.pid}, camera {self.camid}): a tracklet needs >= 1 frame")


@dataclass
class VideoDataset:
    """Three splits of tracklets, plus any problems found while parsing (kept, never lost)."""

    name: str
    train: list[Tracklet] = field(default_factory=list)
    query: list[Tracklet] = field(default_factory=list)
    gallery: list[Tracklet] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Tracklet]:
        if name not in ("train", "query", "gallery"):
            raise DatasetError(f"{self.name}: unknown split {name!r}; expected train, query or gallery")
        return getattr(self, name)

    def statistics(self) -> list[tuple[str, int, int, int]]:
        """Rows ``(split, num_ids, num_tracklets, num_cameras)``."""
        return [(s, *split_statistics(self.split(s))) for s in ("train", "query", "gallery")]


def relabel_tracklets(tracklets: Iterable[Tracklet]) -> list[Tracklet]:
    """Map pids to ``0..num_ids-1`` in sorted order (deterministic), as ``relabel`` does for images."""
    tracklets = list(tracklets)
    mapping = {pid: i for i, pid in enumerate(sorted({t.pid for t in tracklets}))}
    return [Tracklet(t.frames, mapping[t.pid], t.camid) for t in tracklets]
