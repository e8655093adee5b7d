import numpy as np
import pytest
import torch

import reidkit.evaluation.video_extract as vx
from reidkit.data.images import ImageError
from reidkit.data.records import Tracklet
from reidkit.data.video_loader import frame_records
from reidkit.evaluation.extract import extract_features
from reidkit.evaluation.featurefile import load_features, save_features
from reidkit.evaluation.video_extract import extract_tracklet_features
from reidkit.models import build_model
from reidkit.models.temporal import VideoReIDModel
from clip_fakes import write_tracklets


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("trk")
    return write_tracklets(root, [1, 2, 3], cams=2, frames=[5, 2, 7, 1, 3, 4])


@pytest.fixture(scope="module")
def frame_model():
    torch.manual_seed(0)
    return build_model("vit_micro", num_classes=0).eval()


def _reference(frame_model, tracklets):
    """Independent reference: every frame through the image extractor, averaged per tracklet by hand."""
    recs, _ = frame_records(tracklets)
    fs = extract_features(frame_model, recs, progress=False)
    out, k = [], 0
    for t in tracklets:
        out.append(fs.features[k:k + len(t.frames)].mean(0))
        k += len(t.frames)
    return np.stack(out), fs.features


def test_decodes_each_frame_once_and_pools_like_the_reference(data, frame_model, monkeypatch):
    calls = []
    real = vx.load_rgb
    monkeypatch.setattr(vx, "load_rgb", lambda p: calls.append(p) or real(p))
    out = extract_tracklet_features(VideoReIDModel(frame_model, "avg"), data, batch_size=3, keep_frames=True,
                                    progress=False)
    assert sorted(calls) == sorted(p for t in data for p in t.frames)  # every frame, once
    ref, ref_frames = _reference(frame_model, data)
    assert np.allclose(out.tracklets.features, ref, atol=1e-5)
    assert out.tracklets.meta["num_frames"] == [len(t.frames) for t in data]
    assert out.tracklets.pids.tolist() == [t.pid for t in data]
    assert np.allclose(out.frames.features, ref_frames, atol=1e-5)
    assert out.frames.meta["tracklet_index"] == [i for i, t in enumerate(data) for _ in t.frames]


def test_batch_size_and_model_kind_do_not_change_features(data, frame_model):
    a = extract_tracklet_features(VideoReIDModel(frame_model, "max"), data, batch_size=1, progress=False)
    b = extract_tracklet_features(frame_model, data, pool="max", batch_size=64, progress=False)
    assert np.allclose(a.tracklets.features, b.tracklets.features, atol=1e-5)


def test_evenly_decodes_distinct_frames_once(data, frame_model, monkeypatch):
    calls = []
    real = vx.load_rgb
    monkeypatch.setattr(vx, "load_rgb", lambda p: calls.append(p) or real(p))
    out = extract_tracklet_features(frame_model, data, sampler="evenly", seq_len=3, progress=False)
    assert len(calls) == len(set(calls)) == sum(min(3, len(t.frames)) for t in data)
    assert out.tracklets.meta["num_frames"] == [min(3, len(t.frames)) for t in data]
    # a 2-frame tracklet padded to 3 repeats its last frame: weights 1/3, 2/3
    _, frames = _reference(frame_model, data)
    k = len(data[0].frames)
    assert np.allclose(out.tracklets.features[1], (frames[k] + 2 * frames[k + 1]) / 3, atol=1e-5)


def test_missing_frames_are_skipped_listed_or_raised(data, frame_model, tmp_path):
    gone = str(tmp_path / "gone.png")
    ts = [Tracklet(data[0].frames[:2] + (gone,), 1, 0), Tracklet((str(tmp_path / "x.png"),), 9, 1), data[2]]
    out = extract_tracklet_features(frame_model, ts, batch_size=2, keep_frames=True, progress=False)
    assert out.tracklets.meta["missing_frames"] == [gone, str(tmp_path / "x.png")]
    assert out.tracklets.meta["dropped_tracklets"] == [str(tmp_path / "x.png")]
    assert out.tracklets.pids.tolist() == [1, data[2].pid]
    ref, _ = _reference(frame_model, [Tracklet(data[0].frames[:2], 1, 0), data[2]])
    assert np.allclose(out.tracklets.features, ref, atol=1e-5)
    assert out.frames.meta["tracklet_index"] == [0, 0] + [1] * len(data[2].frames)
    with pytest.raises(ImageError, match="gone.png.*tracklet 0: pid 1, camera 0"):
        extract_tracklet_features(frame_model, ts, on_error="raise", progress=False)


def test_tracklet_feature_files_keep_their_meta(data, frame_model, tmp_path):
    out = extract_tracklet_features(frame_model, data, keep_frames=True, progress=False)
    for suffix in (".npz", ".safetensors"):
        save_features(out.frames, tmp_path / f"f{suffix}")
        back = load_features(tmp_path / f"f{suffix}")
        assert back.meta["kind"] == "frames" and back.meta["tracklet_index"] == out.frames.meta["tracklet_index"]
