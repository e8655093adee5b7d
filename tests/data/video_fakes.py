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


def mars_name(pid: int, cam: int, track: int, frame: int) -> str:
    head = "00-1" if pid == -1 else f"{pid:04d}"
    return f"{head}C{cam}T{track:04d}F{frame:03d}.jpg"


def mars_tree(base: Path, train: list[tuple[int, int, int]], test: list[tuple[int, int, int]],
              query_rows: list[int]) -> Path:
    """MARS folders and info files. ``train``/``test`` rows ``(pid, camera 1-based, frames)``;
    ``query_rows`` are 1-based rows of ``test`` (as in ``query_IDX.mat``)."""
    from scipy.io import savemat

    (base / "info").mkdir(parents=True, exist_ok=True)
    seed = 0
    for split, rows in (("train", train), ("test", test)):
        names, table = [], []
        for t, (pid, cam, n) in enumerate(rows, 1):
            start = len(names) + 1
            for f in range(1, n + 1):
                name = mars_name(pid, cam, t, f)
                names.append(name)
                seed += 1
                write_image(base / f"bbox_{split}" / name[:4] / name, seed=seed)
            table.append([start, len(names), pid, cam])
        (base / "info" / f"{split}_name.txt").write_text("".join(n + "\n" for n in names))
        savemat(base / "info" / f"tracks_{split}_info.mat",
                {f"track_{split}_info": __import__("numpy").asarray(table, dtype=float).reshape(-1, 4)})
    savemat(base / "info" / "query_IDX.mat", {"query_IDX": __import__("numpy").asarray([query_rows], dtype=float)})
    return base


def ilids_tree(base: Path, persons: dict[int, tuple[int, int]]) -> Path:
    """iLIDS-VID ``cam1|cam2/personNNN/camK_personNNN_FFFFF.png``; ``persons[pid] = (frames cam1, frames cam2)``
    (0 frames: the person folder is absent in that camera)."""
    seed = 0
    for pid, counts in persons.items():
        for k, n in enumerate(counts, 1):
            for f in range(n):
                seed += 1
                write_image(base / f"cam{k}" / f"person{pid:03d}" / f"cam{k}_person{pid:03d}_{5 + 7 * f:05d}.png",
                            seed=seed)
    return base


def prid_tree(base: Path, persons: dict[int, tuple[int, int]]) -> Path:
    """PRID2011 multi-shot ``cam_a|cam_b/person_NNNN/NNNN.png``; ``persons[pid] = (frames A, frames B)``."""
    seed = 0
    for pid, counts in persons.items():
        for cam, n in zip(("cam_a", "cam_b"), counts):
            for f in range(1, n + 1):
                seed += 1
                write_image(base / cam / f"person_{pid:04d}" / f"{f:04d}.png", seed=seed)
    return base
