"""DukeMTMC-VideoReID reader on folders built in the real layout: records, order, bad input."""
from __future__ import annotations

import os

import pytest

from reidkit.data.datasets import load_dataset
from reidkit.data.records import DatasetError, Tracklet

from video_fakes import duke_video_tree

ROWS = {"train": [(1, 1, 1, 3), (1, 2, 2, 2), (5, 1, 3, 12)],
        "query": [(7, 1, 1, 2), (9, 1, 2, 3)],
        "gallery": [(7, 2, 4, 2), (9, 2, 1, 4), (9, 3, 2, 2), (11, 1, 3, 2)]}


def test_reads_tracklets_in_frame_order(tmp_path):
    base = duke_video_tree(tmp_path / "DukeMTMC-VideoReID", ROWS)
    ds = load_dataset("duke-video", tmp_path)           # found inside the versioned sub-folder
    assert ds.root == str(base) and not ds.problems
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.train] == [(0, 0, 3), (0, 1, 2), (1, 2, 12)]
    assert [(t.pid, t.camid) for t in ds.query] == [(7, 0), (9, 1)]
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.gallery] == [(7, 3, 2), (9, 0, 4), (9, 1, 2), (11, 2, 2)]
    long = ds.train[2].frames                            # F0001 .. F0012 in temporal order
    assert [int(os.path.basename(p).split("_F")[1][:4]) for p in long] == list(range(1, 13))
    assert all(os.path.isfile(p) for t in ds.train + ds.query + ds.gallery for p in t.frames)
    assert ds.statistics() == [("train", 2, 3, 3), ("query", 2, 2, 2), ("gallery", 3, 4, 4)]
    assert ds.frame_statistics()[0] == ("train", 17, 2, 17 / 3, 12)
    assert isinstance(ds.query[0], Tracklet)


def test_aliases_and_min_frames(tmp_path):
    duke_video_tree(tmp_path, ROWS)
    ds = load_dataset("DukeMTMC-VideoReID", tmp_path, min_frames=3)
    assert [len(t.frames) for t in ds.train] == [3, 12]
    assert any("dropped 1 tracklet(s) shorter than min_frames=3" in n for n in ds.notes)


def test_empty_tracklet_and_missing_frame_are_counted_errors(tmp_path):
    duke_video_tree(tmp_path, ROWS, skip={("train", 5, 1, 4), ("train", 5, 1, 7), ("gallery", 9, 2, 2)})
    (tmp_path / "train" / "0005" / "0002").mkdir()      # an empty tracklet folder
    (tmp_path / "query" / "0009" / "0002").mkdir()
    with pytest.raises(DatasetError) as e:
        load_dataset("duke-video", tmp_path)
    msg = str(e.value)
    assert "2 empty tracklet folder(s)" in msg and "2 tracklet(s) with missing frames" in msg
    assert "0005/0001 (F0004 and 1 more)" in msg and "0009/0002 (F0002)" in msg
    ds = load_dataset("duke-video", tmp_path, strict=False)   # lose nothing: the other frames stay
    assert [len(t.frames) for t in ds.train] == [3, 2, 10]
    assert [len(t.frames) for t in ds.gallery] == [2, 3, 2, 2]
    assert len(ds.errors) == 2 and ds.errors == ds.problems


def test_tracklet_over_two_cameras_is_split_and_reported(tmp_path):
    duke_video_tree(tmp_path, ROWS)
    folder = tmp_path / "gallery" / "0011" / "0001"
    (folder / "0011_C3_F0002_X01002.jpg").rename(folder / "0011_C5_F0002_X01002.jpg")
    (folder / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="1 tracklet folder.s. spanning several cameras"):
        load_dataset("duke-video", tmp_path)
    ds = load_dataset("duke-video", tmp_path, strict=False)
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.gallery][-2:] == [(11, 2, 1), (11, 4, 1)]
    assert any("non-image" in p for p in ds.problems)


def test_missing_split_and_names(tmp_path):
    duke_video_tree(tmp_path, {"train": ROWS["train"], "query": ROWS["query"]})
    with pytest.raises(DatasetError, match="missing gallery folder"):
        load_dataset("duke-video", tmp_path)
    (tmp_path / "gallery" / "0003" / "0001").mkdir(parents=True)
    (tmp_path / "gallery" / "0003" / "0001" / "frame.jpg").write_bytes(b"x")
    (tmp_path / "gallery" / "junk").mkdir()
    ds = load_dataset("duke-video", tmp_path, strict=False)
    assert "gallery split is empty" in " ".join(ds.errors)
    assert any("not named '<pid>_C<camera>_F<frame>" in p for p in ds.problems)
    assert any("not an integer pid" in p for p in ds.problems)
