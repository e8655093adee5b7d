import numpy as np
import pytest
import torch

from reidkit.data.records import DatasetError, Tracklet
from reidkit.data.transforms import build_train_transform
from reidkit.data.video_loader import TrackletClips, build_video_train_loader, frame_records, sample_frames
from clip_fakes import write_tracklets


def test_evenly_takes_segment_centres():
    idx = sample_frames(100, 4, "evenly")
    assert idx.tolist() == [12, 37, 62, 87]  # centres of [0,25), [25,50), [50,75), [75,100)
    assert sample_frames(15, 15, "evenly").tolist() == list(range(15))


def test_short_tracklet_repeats_last_frame():
    for method in ("evenly", "random"):
        assert sample_frames(3, 6, method).tolist() == [0, 1, 2, 2, 2, 2]


def test_random_is_sorted_distinct_and_seeded():
    a = sample_frames(50, 8, "random", torch.Generator().manual_seed(3))
    b = sample_frames(50, 8, "random", torch.Generator().manual_seed(3))
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 8 and a.tolist() == sorted(a.tolist())
    assert a.max() < 50 and a.min() >= 0


def test_all_and_bad_arguments():
    assert sample_frames(7, 3, "all").tolist() == list(range(7))
    with pytest.raises(ValueError, match="unknown frame sampler"):
        sample_frames(5, 3, "middle")
    with pytest.raises(DatasetError, match="empty"):
        sample_frames(0, 3)
    with pytest.raises(DatasetError, match="empty tracklet"):
        Tracklet((), 1, 0)


def test_frame_records_keep_labels_and_owner():
    ts = [Tracklet(("a", "b"), 3, 1), Tracklet(("c",), 5, 0)]
    recs, owner = frame_records(ts)
    assert [(r.path, r.pid, r.camid) for r in recs] == [("a", 3, 1), ("b", 3, 1), ("c", 5, 0)]
    assert owner.tolist() == [0, 0, 1]


def test_clip_augmentation_is_shared_by_the_frames(tmp_path):
    ts = write_tracklets(tmp_path, [1], cams=1, frames=1)
    # one frame repeated: every frame of the clip must be transformed identically (same flip/crop/erasing)
    ds = TrackletClips(ts, build_train_transform((64, 32), pad=4, erasing=1.0), seq_len=5, method="random")
    torch.manual_seed(0)
    clip, pid, cam, i = ds[0]
    assert clip.shape == (5, 3, 64, 32) and pid == 1 and cam == 0
    for t in range(1, 5):
        assert torch.equal(clip[t], clip[0])


def test_clip_substitutes_unreadable_frames(tmp_path):
    ts = write_tracklets(tmp_path, [1], cams=1, frames=3)
    broken = Tracklet(ts[0].frames[:1] + (str(tmp_path / "missing.png"),) + ts[0].frames[1:], 1, 0)
    ds = TrackletClips([broken], build_train_transform((64, 32)), seq_len=4, method="evenly")
    clip = ds[0][0]
    assert clip.shape[0] == 4 and ds.num_bad_frames == 1
    with pytest.raises(DatasetError, match="missing.png"):
        TrackletClips([broken], build_train_transform((64, 32)), seq_len=4, method="evenly", on_error="raise")[0]
    dead = Tracklet((str(tmp_path / "x.png"), str(tmp_path / "y.png")), 7, 2)
    with pytest.raises(DatasetError, match="none of its 2 frames"):
        TrackletClips([dead], build_train_transform((64, 32)), seq_len=2, method="evenly")[0]


def test_pk_loader_batches_and_repeats(tmp_path):
    ts = write_tracklets(tmp_path, [1, 2, 3, 4], cams=2, frames=5)
    tf = build_train_transform((64, 32))

    def first_batch():
        loader, sampler, _ = build_video_train_loader(ts, tf, batch_size=4, num_instances=2, seed=5, seq_len=3)
        sampler.set_epoch(0)
        return next(iter(loader))

    clips, pids, cams, idx = first_batch()
    assert clips.shape == (4, 3, 3, 64, 32)
    assert len(set(pids.tolist())) == 2 and all((pids == p).sum() == 2 for p in pids.unique())
    again = first_batch()
    assert torch.equal(clips, again[0]) and torch.equal(idx, again[3])
