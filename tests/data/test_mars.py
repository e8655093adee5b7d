"""MARS reader on a folder built in the real layout (bbox_*/<4 chars>/, info/*.mat and name lists)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.io import savemat

from reidkit.data.datasets import load_dataset
from reidkit.data.records import DatasetError

from video_fakes import mars_name, mars_tree

TRAIN = [(1, 1, 3), (1, 2, 2), (4, 3, 4), (-1, 1, 2)]
TEST = [(2, 1, 3), (2, 2, 2), (3, 4, 2), (3, 6, 5), (0, 5, 2), (-1, 2, 2), (2, 1, 2)]
QUERY = [1, 3]


def test_reads_tracks_query_and_gallery(tmp_path):
    base = mars_tree(tmp_path / "MARS", TRAIN, TEST, QUERY)
    ds = load_dataset("mars", tmp_path)
    assert ds.root == str(base) and not ds.problems
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.train] == [(0, 0, 3), (0, 1, 2), (1, 2, 4)]
    assert [(t.pid, t.camid) for t in ds.query] == [(2, 0), (3, 3)]
    # the rest of the test tracks, distractors (pid 0) kept, junk (pid -1) dropped
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.gallery] == [(2, 1, 2), (3, 5, 5), (0, 4, 2), (2, 0, 2)]
    assert any("train: dropped 1 junk tracklet(s)" in n for n in ds.notes)
    assert any("gallery: dropped 1 junk tracklet(s)" in n for n in ds.notes)
    # 1-based inclusive ranges, frames in list order, in the folder named by the first four characters
    assert [os.path.basename(p) for p in ds.gallery[1].frames] == [mars_name(3, 6, 4, f) for f in range(1, 6)]
    assert ds.gallery[1].frames[0].endswith(os.path.join("bbox_test", "0003", mars_name(3, 6, 4, 1)))
    assert all(os.path.isfile(p) for t in ds.train + ds.query + ds.gallery for p in t.frames)


def test_info_files_that_do_not_match_the_folders(tmp_path):
    base = mars_tree(tmp_path, TRAIN, TEST, QUERY)
    os.remove(base / "bbox_test" / "0003" / mars_name(3, 6, 4, 2))          # a listed frame is missing
    os.remove(base / "bbox_test" / "0003" / mars_name(3, 6, 4, 5))
    for f in (1, 2):                                                         # a whole tracklet is gone
        os.remove(base / "bbox_train" / "0001" / mars_name(1, 2, 2, f))
    extra = base / "bbox_train" / "0004" / "0004C3T0009F001.jpg"
    extra.write_bytes((base / "bbox_train" / "0004" / mars_name(4, 3, 3, 1)).read_bytes())
    names = (base / "info" / "test_name.txt").read_text().split()
    names[0] = mars_name(7, 1, 1, 1)                                         # the list names another pid
    (base / "info" / "test_name.txt").write_text("\n".join(names) + "\n")
    with pytest.raises(DatasetError) as e:
        load_dataset("mars", tmp_path)
    msg = str(e.value)
    assert "test: 2 tracklet(s) with frames listed in info but missing from bbox_test/" in msg
    assert "tracks_test_info.mat row 1 (1..3): 1 frame(s), tracks_test_info.mat row 4 (8..12): 2 frame(s)" in msg
    assert "train: 1 empty tracklet(s) (no frame on disk): tracks_train_info.mat row 2 (4..5)" in msg
    assert "test: 1 track row(s) whose frame names disagree with the row's pid/camera" in msg
    ds = load_dataset("mars", tmp_path, strict=False)                        # keeps every frame that exists
    assert [len(t.frames) for t in ds.query] == [2, 2]
    assert [len(t.frames) for t in ds.gallery] == [2, 3, 2, 2]
    assert [len(t.frames) for t in ds.train] == [3, 4]
    assert any("1 image(s) not named in info/train_name.txt" in p for p in ds.problems)


def test_rows_and_query_index_out_of_range(tmp_path):
    base = mars_tree(tmp_path, TRAIN, TEST, [1, 3, 99])
    table = np.asarray([[1, 3, 1, 1], [4, 80, 1, 2], [6, 5, 4, 3]], float)
    savemat(base / "info" / "tracks_train_info.mat", {"track_train_info": table})
    with pytest.raises(DatasetError) as e:
        load_dataset("mars", tmp_path)
    msg = str(e.value)
    assert "1 query row(s) outside the 7 test tracks, e.g. [99]" in msg
    assert "train: 1 track row(s) outside the 11 names of info/train_name.txt: tracks_train_info.mat row 2" in msg
    assert "train: 1 empty tracklet(s) (start > end): tracks_train_info.mat row 3 (6..5)" in msg


@pytest.mark.parametrize("damage,expect", [
    ("remove", "missing"),
    ("key", "no variable 'track_test_info' (found other)"),
    ("shape", "must be an N x 4 table"),
    ("text", "not a readable .mat file"),
])
def test_broken_info_files_are_named(tmp_path, damage, expect):
    base = mars_tree(tmp_path, TRAIN, TEST, QUERY)
    mat = base / "info" / "tracks_test_info.mat"
    if damage == "remove":
        mat.unlink()
    elif damage == "key":
        savemat(mat, {"other": np.zeros((2, 4))})
    elif damage == "shape":
        savemat(mat, {"track_test_info": np.zeros((2, 3))})
    else:
        mat.write_text("not a mat file")
    with pytest.raises(DatasetError, match="tracks_test_info.mat") as e:
        load_dataset("mars", tmp_path)
    assert expect in str(e.value)
    assert load_dataset("mars", tmp_path, strict=False).errors


def test_fast_name_check_agrees_with_the_parser():
    from reidkit.data.datasets.mars import name_pid_camera, row_prefix

    names = ["0001C1T0001F001.jpg", "00-1C2T0003F010.jpg", "0000C6T0100F001.jpg", "0001C1X0001F001.jpg",
             "0012C1T0001F001.jpg", "0001C10T001F001.jpg", "abcdC1T0001F001.jpg", "0001C", "0001c1T0001F001.jpg"]
    rows = [(1, 1), (-1, 2), (0, 6), (12, 1), (1, 2), (2, 1)]
    for n in names:
        for pid, cam in rows:
            assert n.startswith(row_prefix(pid, cam)) == (name_pid_camera(n) == (pid, cam)), (n, pid, cam)
