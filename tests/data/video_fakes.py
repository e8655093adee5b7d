"""Builders of tiny tracklet datasets in the real on-disk layouts (8x4 px JPEGs), shared by the video tests."""
from __future__ import annotations

from pathlib import Path

from data_fakes import write_image


def duke_video_tree(base: Path, splits: dict[str, list[tuple[int, int, int, int]]], *, skip=()) -> Path:
    """``splits[split]`` = rows ``(pid, tracklet, camera 1-based, frames)``; frames F0001..F000n.

    ``skip`` lists ``(split, pid, tracklet, frame)`` frames not written (a hole in the tracklet).
    """
    seed = 0
    for split, rows in splits.items():
        (base / split).mkdir(parents=True, exist_ok=True)
        for pid, tid, cam, n in rows:
            folder = base / split / f"{pid:04d}" / f"{tid:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for f in range(1, n + 1):
                if (split, pid, tid, f) in skip:
                    continue
                seed += 1
                write_image(folder / f"{pid:04d}_C{cam}_F{f:04d}_X{1000 + f:05d}.jpg", seed=seed)
    return base
