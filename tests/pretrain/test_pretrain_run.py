"""A micro DINO run end to end: outputs, schedules, teacher EMA, corrupt images, resume."""
import csv

import numpy as np
import pytest
import torch

from reidkit.methods.pretrain_dino import pretrain
from reidkit.models import load_model
from reidkit.utils.checkpoint import load_state


def teacher_backbone(run):
    return load_state(run / "last.pt")["teacher"]


def test_micro_run_writes_model_log_and_checkpoint(pool, tmp_path, micro_config):
    (pool / "sub0" / "broken.jpg").write_bytes(b"not an image at all")
    run = pretrain(micro_config(pool, tmp_path / "run"))
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert len(rows) == 2 * 3  # 13 images // 4 = 3 iterations x 2 epochs
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    # lr: warm-up from 0 during epoch 0 (peak 5e-4 * 4 / 256), then cosine down to min_lr
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(5e-4 * 4 / 256)
    moms = [float(r["teacher_momentum"]) for r in rows]
    assert moms[0] == pytest.approx(0.996) and all(a <= b for a, b in zip(moms, moms[1:]))
    wds = [float(r["wd"]) for r in rows]
    assert wds[0] == pytest.approx(0.04) and all(a <= b for a, b in zip(wds, wds[1:]))
    assert float(rows[-1]["images_per_s"]) > 0
    # every logged value against the formulas: 6 iterations, 3 of linear lr warm-up from 0
    peak, n = 5e-4 * 4 / 256, 6
    want_lr = [0, peak / 3, 2 * peak / 3] + [1e-6 + (peak - 1e-6) * (1 + np.cos(np.pi * i / 3)) / 2 for i in range(3)]
    np.testing.assert_allclose(lrs, want_lr, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(moms, [1 - 0.004 * (1 + np.cos(np.pi * i / n)) / 2 for i in range(n)], rtol=1e-12)
    np.testing.assert_allclose(wds, [0.4 - 0.36 * (1 + np.cos(np.pi * i / n)) / 2 for i in range(n)], rtol=1e-12)
    # the corrupt file was skipped, counted and named, never fatal
    assert (run / "skipped.txt").read_text().strip().endswith("broken.jpg")
    assert int(rows[-1]["skipped_images"]) == 1
    # the teacher backbone is published as a reidkit model
    model = load_model(run / "last.safetensors")
    sd = teacher_backbone(run)
    for k, v in model.backbone.state_dict().items():
        torch.testing.assert_close(v, sd[f"backbone.{k}"])
    assert (run / "config.yaml").is_file()


def test_last_layer_frozen_in_first_epoch(pool, tmp_path, micro_config):
    cfg = micro_config(pool, tmp_path / "run", **{"solver.epochs": 1})
    run = pretrain(cfg)
    student = load_state(run / "last.pt")["student"]
    # the teacher was copied from the student at start; in epoch 0 the last layer never moved,
    # so the student's last layer still equals the teacher's (EMA of a constant is that constant)
    torch.testing.assert_close(student["head.last_layer.weight_v"], teacher_backbone(run)["head.last_layer.weight_v"])
    assert not torch.equal(student["head.mlp.0.weight"], teacher_backbone(run)["head.mlp.0.weight"])


def test_existing_run_needs_resume_and_resume_needs_run(pool, tmp_path, micro_config):
    cfg = micro_config(pool, tmp_path / "run", **{"solver.epochs": 1})
    with pytest.raises(ValueError, match="nothing to resume"):
        pretrain(cfg, resume=True)
    pretrain(cfg)
    with pytest.raises(ValueError, match="--resume"):
        pretrain(cfg)
    cfg.data.batch_size = 2  # another batch size: a different run, refused unless forced ...
    with pytest.raises(ValueError, match=r"data.batch_size 4 -> 2.*--force"):
        pretrain(cfg, resume=True)
    with pytest.raises(ValueError, match="same data, batch size"):  # ... and even then the schedules would not line up
        pretrain(cfg, resume=True, force=True)


def test_resume_after_epoch_and_mid_epoch_equals_uninterrupted(pool, tmp_path, micro_config):
    full = pretrain(micro_config(pool, tmp_path / "full"))
    ref = teacher_backbone(full)

    # stop after one epoch, then resume for the second
    part = pretrain(micro_config(pool, tmp_path / "part", **{"solver.epochs": 1}))
    state = load_state(part / "last.pt")
    assert state["epoch"] == 1
    cfg = micro_config(pool, tmp_path / "part")
    pretrain(cfg, resume=True)
    got = teacher_backbone(part)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-6)
    rows = list(csv.DictReader(open(part / "log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))


def test_killed_mid_epoch_resumes_to_the_same_weights(pool, tmp_path, micro_config, monkeypatch):
    from reidkit.methods import pretrain_dino

    full = pretrain(micro_config(pool, tmp_path / "full"))
    ref = teacher_backbone(full)

    real, calls = pretrain_dino.ema_update, {"n": 0}

    def dies_at_iteration_5(*args):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 1, 2nd iteration: after the mid-epoch checkpoint of iteration 1
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(pretrain_dino, "ema_update", dies_at_iteration_5)
    cfg = micro_config(pool, tmp_path / "killed", checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg)
    state = load_state(tmp_path / "killed" / "last.pt")
    assert (state["epoch"], state["iter_in_epoch"]) == (1, 1)
    monkeypatch.setattr(pretrain_dino, "ema_update", real)
    pretrain(cfg, resume=True)
    got = teacher_backbone(tmp_path / "killed")
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-6)


def test_any_stem_and_attention_ics_with_knn(pool, tmp_path, micro_config):
    cfg = micro_config(pool, tmp_path / "run", **{"solver.epochs": 1, "model.preset": "vit_micro_ics",
                                                  "model.knn_k": 4})
    run = pretrain(cfg)
    model = load_model(run / "last.safetensors")
    assert model.spec.stem == "ics" and model.spec.knn_k == 4
    sd = teacher_backbone(run)
    assert any(".IN." in k for k in sd)  # the IBN stem was trained and exported
