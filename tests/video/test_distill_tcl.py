import json

import pytest
import torch

from reidkit.config import from_dict
from reidkit.data.records import VideoDataset
from reidkit.losses.tcl import TripletContrastLoss
from reidkit.methods.distill_tcl import (DistillConfig, DistillError, DistillLossConfig, LossConfig,
                                         MutualDistillLoss, distill)
from clip_fakes import write_tracklets


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("vid")
    train = write_tracklets(root / "train", [10, 11, 12, 13], cams=2, frames=4, seed=1)
    query = write_tracklets(root / "query", [20, 21], cams=1, frames=3, seed=2)
    gallery = [t for t in write_tracklets(root / "gallery", [20, 21, 22], cams=2, frames=3, seed=2) if t.camid == 1]
    return VideoDataset("fake", train, query, gallery)


def _cfg(tmp_path, method="tcl", epochs=2, **extra):
    data = {"data": {"size": [64, 32], "seq_len": 3, "batch_size": 4, "num_instances": 2, "pad": 2},
            "teacher": {"preset": "vit_micro", "drop_path_rate": 0.0},
            "student": {"preset": "vit_micro", "drop_path_rate": 0.0},
            "distill": {"method": method},
            "solver": {"epochs": epochs, "warmup_epochs": 0, "lr": 1e-3},
            "eval": {"batch_size": 8}, "output": str(tmp_path / f"run_{method}"), **extra}
    return from_dict(DistillConfig, data)


def test_mutual_loss_terms():
    torch.manual_seed(0)
    pids = torch.tensor([0, 0, 1, 1])
    zs, fs, zt, ft = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 3), torch.randn(4, 6)
    loss = MutualDistillLoss(LossConfig(label_smoothing=0.0), DistillLossConfig("tcl", tcl_weight=2.0, kd_weight=0.0))
    total, stats = loss((zs, fs), (zt, ft), pids)
    own = loss._own(zs, fs, pids) + loss._own(zt, ft, pids)
    tcl = TripletContrastLoss(0.1)
    want = own + 2.0 * (tcl(fs, ft, pids) + tcl(ft, fs, pids))
    assert float(total) == pytest.approx(float(want), rel=1e-5)
    one_way = MutualDistillLoss(LossConfig(label_smoothing=0.0), DistillLossConfig("tcl", mutual=False, kd_weight=0.0))
    assert "tcl_t" not in one_way((zs, fs), (zt, ft), pids)[1]


def test_tcl_run_writes_models_and_metrics(dataset, tmp_path):
    out = distill(_cfg(tmp_path), dataset=dataset, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    for k in ("i2v_mAP", "i2i_mAP", "v2v_mAP", "teacher_v2v_mAP"):
        assert 0.0 <= summary["final"][k] <= 100.0
    from reidkit.models import load_model
    from reidkit.models.temporal import load_video_model
    assert load_model(out / "student.safetensors").num_classes == 4
    assert load_video_model(out / "teacher.safetensors").config["pool"] == "avg"
    log = (out / "log.csv").read_text()
    assert "tcl_s" in log and "tcl_t" in log and "kd_s" in log
    with pytest.raises(DistillError, match="already holds a run"):
        distill(_cfg(tmp_path), dataset=dataset, progress=False)


def test_resume_equals_an_uninterrupted_run(dataset, tmp_path, monkeypatch):
    import reidkit.engine.run as ckpt  # the engine's Run.save writes last.pt through this name

    full = distill(_cfg(tmp_path / "a", method="kd", eval={"enabled": False}), dataset=dataset, progress=False)
    real = ckpt.save_state

    def killed_after_first_epoch(path, state):
        real(path, state)
        raise KeyboardInterrupt  # the process dies right after epoch 1 is saved

    cfg = _cfg(tmp_path / "b", method="kd", eval={"enabled": False})
    monkeypatch.setattr(ckpt, "save_state", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        distill(cfg, dataset=dataset, progress=False)
    monkeypatch.setattr(ckpt, "save_state", real)
    resumed = distill(cfg, resume=True, dataset=dataset, progress=False)
    from reidkit.utils.io import load_tensors
    a, _ = load_tensors(full / "student.safetensors")
    b, _ = load_tensors(resumed / "student.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_none_trains_the_student_alone(dataset, tmp_path):
    out = distill(_cfg(tmp_path, method="none", epochs=1), dataset=dataset, progress=False)
    assert not (out / "teacher.safetensors").exists()
    final = json.loads((out / "summary.json").read_text())["final"]
    assert "teacher_v2v_mAP" not in final and "i2v_mAP" in final


def test_bad_setups_fail_fast(dataset, tmp_path):
    with pytest.raises(DistillError, match="multiple of num_instances"):
        distill(_cfg(tmp_path, data={"batch_size": 5, "num_instances": 2}), dataset=dataset)
    with pytest.raises(DistillError, match="data.root is not set"):
        distill(_cfg(tmp_path / "x"))
    # a network's preset and overrides are checked before any model is built or batch loaded
    with pytest.raises(DistillError, match=r"teacher: unknown model override\(s\) \['knn'\]"):
        distill(_cfg(tmp_path / "y", teacher={"preset": "vit_micro", "overrides": {"knn": 3}}), dataset=dataset)
    assert not (tmp_path / "y" / "run_tcl").exists()


def test_video_trains_the_video_model_alone(dataset, tmp_path):
    out = distill(_cfg(tmp_path, method="video", epochs=1, teacher={"preset": "vit_micro", "pool": "attention",
                                                                     "drop_path_rate": 0.0}),
                  dataset=dataset, progress=False)
    assert not (out / "student.safetensors").exists() and (out / "teacher.safetensors").exists()
    final = json.loads((out / "summary.json").read_text())["final"]
    assert "teacher_v2v_mAP" in final and "i2v_mAP" in final
    assert "tcl_s" not in (out / "log.csv").read_text()
