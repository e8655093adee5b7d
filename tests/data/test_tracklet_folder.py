"""The generic ``pid/camera/tracklet/frames`` reader."""
from __future__ import annotations

import os

import pytest

from reidkit.data.datasets import load_dataset
from reidkit.data.records import DatasetError

from data_fakes import write_image


def tree(root, rows):
    """rows: (split or '', pid folder, camera folder, tracklet folder, number of frames)."""
    for i, (split, pid, cam, tid, n) in enumerate(rows):
        for f in range(1, n + 1):
            write_image(root / split / pid / cam / tid / f"{f}.jpg", seed=i * 100 + f)
    return root


def test_splits_pids_cameras_and_natural_frame_order(tmp_path):
    tree(tmp_path, [("train", "3", "cam_b", "t1", 12), ("train", "3", "cam_a", "t1", 2), ("train", "8", "cam_a", "x", 1),
                    ("query", "5", "cam_a", "0", 2), ("gallery", "5", "cam_c", "0", 3), ("gallery", "6", "cam_a", "9", 1)])
    ds = load_dataset("tracklets", tmp_path)
    assert not ds.problems
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.train] == [(0, 0, 2), (0, 1, 12), (1, 0, 1)]
    assert [(t.pid, t.camid) for t in ds.query] == [(5, 0)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(5, 2), (6, 0)]
    assert [os.path.basename(p) for p in ds.train[1].frames] == [f"{i}.jpg" for i in range(1, 13)]
    assert any("cam_a -> 0, cam_b -> 1, cam_c -> 2" in n for n in ds.notes)


def test_train_only_and_gallery_only(tmp_path):
    tree(tmp_path / "a", [("", "alice", "1", "1", 2), ("", "bob", "2", "1", 2), ("", "bob", "10", "1", 1)])
    ds = load_dataset("tracklets", tmp_path / "a")
    assert [(t.pid, t.camid) for t in ds.train] == [(0, 0), (1, 1), (1, 2)]   # cameras 1, 2, 10 numerically
    assert any("sorted rank" in n for n in ds.notes)
    tree(tmp_path / "b", [("gallery", "000007", "MOT17-02", "s000", 3)])
    ds = load_dataset("tracklets", tmp_path / "b")
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.gallery] == [(7, 0, 3)] and not ds.train and not ds.errors


def test_bad_input(tmp_path):
    tree(tmp_path, [("query", "5", "0", "0", 2)])
    with pytest.raises(DatasetError, match="missing gallery folder"):
        load_dataset("tracklets", tmp_path)
    tree(tmp_path, [("gallery", "5", "1", "0", 2)])
    (tmp_path / "gallery" / "5" / "1" / "1").mkdir()
    (tmp_path / "gallery" / "5" / "1" / "stray.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="1 empty tracklet folder"):
        load_dataset("tracklets", tmp_path)
    ds = load_dataset("tracklets", tmp_path, strict=False, min_frames=1)
    assert len(ds.gallery) == 1 and any("outside tracklet folders" in p for p in ds.problems)
