"""MOTChallenge adapter: tracks -> crops (clipped, one decode per frame) -> generic tracklet folder."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from reidkit.data.datasets import load_dataset
from reidkit.data.datasets import mot as mot_module
from reidkit.data.datasets.mot import MotError, mot_to_tracklets, read_mot, segments

W, H = 64, 48


def frame_array(n: int) -> np.ndarray:
    """A frame whose pixels say where they are: R = x * 4, G = y * 5, B = frame * 20."""
    ys, xs = np.mgrid[0:H, 0:W]
    return np.stack([xs * 4, ys * 5, np.full_like(xs, n * 20)], -1).astype(np.uint8)


def sequence(root, lines, frames=range(1, 11)):
    for n in frames:
        (root / "img1").mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame_array(n)).save(root / "img1" / f"{n:06d}.jpg", quality=100)
    (root / "gt").mkdir(parents=True, exist_ok=True)
    (root / "gt" / "gt.txt").write_text("".join(line + "\n" for line in lines))
    return root


# track 1: frames 1-4 and 8-10 (3 missing), track 2: frames 2-3, partly outside, then entirely outside
GT = [f"{f},1,10,5,8,12,1,1,1.0" for f in (1, 2, 3, 4, 8, 9, 10)] + [
    "2,2,-4,30,10,30,1,1,0.8", "3,2,60,40,10,10,1,1,0.8", "5,2,70,10,5,5,1,1,0.5",
    "4,3,1,1,5,5,0,1,1.0",        # flagged 0: ignored
    "4,4,1,1,5,5,1,3,1.0"]        # a car: not a pedestrian


def test_gt_to_tracklet_folder_with_gaps_and_clipping(tmp_path, monkeypatch):
    seq = sequence(tmp_path / "MOT17-02", GT)
    decoded = []
    real = mot_module.load_rgb
    monkeypatch.setattr(mot_module, "load_rgb", lambda p: decoded.append(p) or real(p))
    res = mot_to_tracklets(seq, tmp_path / "out", max_gap=2)
    assert sorted(decoded) == sorted(set(decoded)) and len(decoded) == 7   # each frame decoded once (frame 5 has no box inside)
    assert (res.camera, res.tracks, res.tracklets, res.crops) == ("MOT17-02", 2, 3, 9)
    notes = " ".join(res.notes)
    assert "left out 1 ground-truth row(s) flagged 0" in notes and "class other than (1,)" in notes
    assert "2 track(s) cut into 3 tracklet(s) at gaps of more than 2 frame(s)" in notes
    assert "2 box(es) clipped" in notes
    assert len(res.problems) == 1 and "1 box(es) entirely outside the image" in res.problems[0]
    assert "skipped: line 10 (frame 5, id 2)" in res.problems_file.read_text()

    ds = load_dataset("tracklets", tmp_path / "out")
    assert [(t.pid, len(t.frames)) for t in ds.gallery] == [(1, 4), (1, 3), (2, 2)]
    assert {t.camid for t in ds.gallery} == {0} and not ds.train and not ds.query and not ds.errors
    # the crop of frame 9, box (10, 5, 8, 12), is that window of frame 9 (JPEG noise aside)
    crop = np.asarray(Image.open(ds.gallery[1].frames[1]), np.float32)
    assert crop.shape == (12, 8, 3)
    assert np.abs(crop - frame_array(9)[5:17, 10:18]).mean() < 3.0
    # clipped: (-4, 30, 10, 30) -> x 0..6, y 30..48; (60, 40, 10, 10) -> x 60..64, y 40..48
    clipped = [np.asarray(Image.open(p)).shape[:2] for p in ds.gallery[2].frames]
    assert clipped == [(18, 6), (8, 4)]
    with open(res.manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and rows[-1]["x"] == "60" and rows[-1]["w"] == "4" and rows[-1]["h"] == "8"
    assert all((tmp_path / "out" / r["path"]).is_file() for r in rows)


def test_without_max_gap_a_track_is_one_tracklet_and_tracker_output(tmp_path):
    seq = sequence(tmp_path / "seq", GT)
    res = mot_to_tracklets(seq, tmp_path / "out", camera="c7", min_frames=3)
    assert res.tracklets == 1 and "shorter than min_frames=3" in " ".join(res.notes)   # track 2: 2 boxes inside
    assert [len(t.frames) for t in load_dataset("tracklets", tmp_path / "out").gallery] == [7]
    # tracker output: frame,id,x,y,w,h,conf,-1,-1,-1 next to img1/, conf threshold
    trk = tmp_path / "seq" / "tracker.txt"
    trk.write_text("1,5,0,0,9,9,0.9,-1,-1,-1\n2,5,1,1,9,9,0.3,-1,-1,-1\n3,5,2,2,9,9,0.8,-1,-1,-1\n")
    res = mot_to_tracklets(trk, tmp_path / "out2", min_conf=0.5, split="query", pid_offset=100)
    assert res.camera == "seq" and res.crops == 2 and "left out 1 row(s) with conf < 0.5" in res.notes[0]
    assert (tmp_path / "out2" / "query" / "000105" / "seq" / "000001" / "000003.jpg").is_file()
    with pytest.raises(MotError, match="already holds tracklets of camera 'seq'"):
        mot_to_tracklets(trk, tmp_path / "out2", min_conf=0.5, split="query", pid_offset=100)
    assert mot_to_tracklets(trk, tmp_path / "out2", min_conf=0.5, split="query", pid_offset=100,
                            overwrite=True).crops == 2


def test_malformed_rows_are_counted_before_any_crop(tmp_path):
    bad = GT + ["7,1,x,5,8,12,1,1,1", "9", "6,1,10,5,0,12,1,1,1", "8,1,10,5,8,12,1,1,1", "12,1,1,1,5,5,1,1,1",
                "0,9,1,1,5,5,1,1,1", "2.5,9,1,1,5,5", "3,-1,1,1,5,5"]
    seq = sequence(tmp_path / "seq", bad)
    with pytest.raises(MotError) as e:
        mot_to_tracklets(seq, tmp_path / "out")
    msg = str(e.value)
    assert "6 malformed row(s)" in msg and "line 13 '7,1,x,5,8,12,1,1,1'" in msg
    assert "1 duplicate row(s)" in msg and "line 16 (frame 8, id 1)" in msg
    assert "1 row(s) whose frame image is missing" in msg and "line 17 (frame 12)" in msg
    assert not (tmp_path / "out").exists()                                   # nothing cut
    res = mot_to_tracklets(seq, tmp_path / "out", strict=False)              # skip them, list every one
    assert res.crops == 9 and len(res.problems) == 4
    listed = res.problems_file.read_text().splitlines()
    assert len(listed) == 6 + 1 + 1 + 1
    assert any("id < 0" in p for p in listed) and any("fewer than 6 fields" in p for p in listed)
    assert read_mot(seq / "gt" / "gt.txt").errors   # the parser alone never raises on rows


def test_segments_and_sequence_errors(tmp_path):
    from reidkit.data.datasets.mot import Box

    boxes = [Box(f, 1, 0, 0, 1, 1, 1, f) for f in (9, 1, 2, 4, 5, 20)]
    assert [[b.frame for b in s] for s in segments(boxes, 1)] == [[1, 2, 4, 5], [9], [20]]
    assert [[b.frame for b in s] for s in segments(boxes, 0)] == [[1, 2], [4, 5], [9], [20]]
    assert len(segments(boxes, None)) == 1
    with pytest.raises(MotError, match="no gt/gt.txt"):
        mot_to_tracklets(tmp_path, tmp_path / "out")
    (tmp_path / "t.txt").write_text("1,1,0,0,5,5\n")
    with pytest.raises(MotError, match="no img1/"):
        mot_to_tracklets(tmp_path / "t.txt", tmp_path / "out")


def test_folder_of_sequences_and_of_tracker_results(tmp_path):
    from reidkit.data.datasets.mot import convert_sequences

    train = tmp_path / "MOT17" / "train"
    sequence(train / "MOT17-02", GT)
    sequence(train / "MOT17-04", ["1,1,0,0,9,9,1,1,1", "2,1,0,0,9,9,1,1,1", "1,3,5,5,9,9,1,1,1"], frames=range(1, 4))
    res = convert_sequences(train, tmp_path / "out")
    assert [(r.camera, r.tracks, r.crops) for r in res] == [("MOT17-02", 2, 9), ("MOT17-04", 2, 3)]
    ds = load_dataset("tracklets", tmp_path / "out")
    # MOT17-02 keeps track ids 1, 2; MOT17-04 is offset past them: ids 1, 3 -> pids 4, 6
    assert sorted({(t.pid, t.camid) for t in ds.gallery}) == [(1, 0), (2, 0), (4, 1), (6, 1)]
    with open(tmp_path / "out" / "MOT17-04.crops.csv", newline="") as f:
        assert {(r["pid"], r["track_id"]) for r in csv.DictReader(f)} == {("4", "1"), ("6", "3")}
    shared = convert_sequences(train, tmp_path / "shared", global_ids=True)
    assert sum(r.crops for r in shared) == 12
    assert sorted({t.pid for t in load_dataset("tracklets", tmp_path / "shared").gallery}) == [1, 2, 3]

    # tracker results, one <sequence>.txt each, with the sequences' frames
    results = tmp_path / "results"
    results.mkdir()
    (results / "MOT17-04.txt").write_text("1,7,0,0,9,9,0.9,-1,-1,-1\n3,7,0,0,9,9,0.9,-1,-1,-1\n")
    with pytest.raises(MotError, match="pass the folder of their sequences with --frames"):
        convert_sequences(results, tmp_path / "r")
    res = convert_sequences(results, tmp_path / "r", frames=train, max_gap=0)
    assert [(r.camera, r.tracklets, r.crops) for r in res] == [("MOT17-04", 2, 2)]
    with pytest.raises(MotError, match="--camera names one"):
        convert_sequences(train, tmp_path / "x", camera="c1")


def test_every_sequence_is_checked_before_any_crop(tmp_path):
    from reidkit.data.datasets.mot import convert_sequences

    train = tmp_path / "train"
    sequence(train / "A", GT)
    sequence(train / "B", ["1,1,0,0,9,9,1,1,1", "oops"], frames=range(1, 3))
    with pytest.raises(MotError, match="1 malformed row"):
        convert_sequences(train, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    dry = convert_sequences(train, tmp_path / "out", strict=False, dry_run=True)
    assert [r.crops for r in dry] == [9, 1] and not (tmp_path / "out").exists()


def test_mot15_ground_truth_has_no_class_or_visibility(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,5,8,12,1,-1,-1,-1\n2,1,10,5,8,12,1,-1,-1,-1\n2,2,1,1,5,5,0,-1,-1,-1\n")
    parsed = read_mot(gt, min_visibility=0.5)
    assert [(b.frame, b.track_id) for b in parsed.boxes] == [(1, 1), (2, 1)]
    assert parsed.notes == ["gt.txt: left out 1 ground-truth row(s) flagged 0 (ignore)"]
    mot17 = tmp_path / "mot17.txt"          # the same rows with a class and a visibility
    mot17.write_text("1,1,10,5,8,12,1,1,0.9\n2,1,10,5,8,12,1,7,0.9\n3,1,10,5,8,12,1,1,0.2\n")
    parsed = read_mot(mot17, gt=True, min_visibility=0.5)
    assert [b.frame for b in parsed.boxes] == [1] and len(parsed.notes) == 2
