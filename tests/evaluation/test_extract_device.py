"""GPU-path extraction on CPU: device decode vs PIL, the compiled-batch padding, torchrun shards + merge."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from reidkit.data.records import Record
from reidkit.data.transforms import build_test_transform
from reidkit.evaluation import extract as ex
from reidkit.evaluation.featurefile import load_features


class Pool(torch.nn.Module):
    """Per-sample ops only: a row's feature never depends on the rest of its batch."""

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, (4, 2)).flatten(1) * 3 + 1


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(9):
        h, w = (48, 24) if i % 3 else (60, 30)
        arr = (rng.integers(0, 255, (h // 8, w // 8, 3)).repeat(8, 0).repeat(8, 1)).astype(np.uint8)
        img = Image.fromarray(arr)
        name = f"{i + 1:04d}_c{i % 3 + 1}s1_{i:06d}_00"
        if i == 4:
            img.save(d / f"{name}.png")
        elif i == 5:
            img.save(d / f"{name}.jpg", progressive=True)
        else:
            img.save(d / f"{name}.jpg", quality=95)
    (d / "0100_c1s1_000099_00.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken \xff\xd9")
    return d


def test_device_decode_matches_the_pil_path(folder):
    tf = build_test_transform((32, 16))
    ref = ex.extract_features(Pool(), folder, tf, batch_size=4, progress=False, decode="pil")
    got = ex.extract_features(Pool(), folder, tf, batch_size=4, progress=False, decode="device", num_workers=2)
    assert got.paths == ref.paths and len(got) == 9
    assert got.meta["skipped"] == ref.meta["skipped"] and len(got.meta["skipped"]) == 1
    assert np.array_equal(got.pids, ref.pids) and np.array_equal(got.camids, ref.camids)
    # PIL and tensor resize agree to about a grey level: features (pooled pixels) within 1/255 * 2 * 3
    assert np.abs(got.features - ref.features).max() < 0.03
    with pytest.raises(Exception, match="0100_c1s1"):
        ex.extract_features(Pool(), folder, tf, batch_size=4, progress=False, decode="device", on_error="raise")
    with pytest.raises(ValueError, match="decode='device' needs"):
        ex.extract_features(Pool(), folder, lambda im: im, progress=False, decode="device")


def test_compiled_forward_pads_the_last_batch(folder, monkeypatch):
    seen = []

    def fake_compile(model, dynamic=None):
        def run(x, **kw):
            seen.append(len(x))
            return model(x, **kw)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    tf = build_test_transform((32, 16))
    ref = ex.extract_features(Pool(), folder, tf, batch_size=4, progress=False)
    got = ex.extract_features(Pool(), folder, tf, batch_size=4, progress=False, compile=True)
    assert set(seen) == {4} and got.paths == ref.paths
    np.testing.assert_array_equal(got.features, ref.features)


def test_merge_keeps_order_and_skips(folder, tmp_path):
    tf = build_test_transform((32, 16))
    records = ex.as_records(folder)
    whole = ex.extract_features(Pool(), records, tf, progress=False)
    parts = []
    for r in range(3):
        lo, hi = ex.shard_bounds(len(records), r, 3)
        p = ex.part_path(tmp_path / "f.safetensors", r, 3)
        ex.extract_features(Pool(), records[lo:hi], tf, progress=False).save(p)
        parts.append(p)
    merged = ex.merge_feature_parts(parts, tmp_path / "f.safetensors")
    assert merged.paths == whole.paths and merged.meta["skipped"] == whole.meta["skipped"]
    np.testing.assert_array_equal(load_features(tmp_path / "f.safetensors").features, whole.features)
    assert [ex.shard_bounds(10, r, 4) for r in range(4)] == [(0, 2), (2, 5), (5, 7), (7, 10)]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_equal_one_process(folder, tmp_path):
    from reidkit.models import build_model
    from reidkit.models.model_file import save_model

    torch.manual_seed(0)
    save_model(build_model("vit_micro", img_size=(32, 16)), tmp_path / "m.safetensors")
    env = {**os.environ, "REIDKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    args = ["-m", "reidkit.cli.main", "extract", "--model", str(tmp_path / "m.safetensors"), "--images", str(folder),
            "--device", "cpu", "--batch-size", "1", "--workers", "0"]
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one.safetensors")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={_free_port()}", *args, "--out", str(tmp_path / "two.safetensors")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    a, b = load_features(tmp_path / "one.safetensors"), load_features(tmp_path / "two.safetensors")
    assert a.paths == b.paths and len(a) == 9 and b.meta["parts"] == 2
    assert a.meta["skipped"] == b.meta["skipped"]
    np.testing.assert_array_equal(a.features, b.features)
    assert not list(tmp_path.glob("two.part*"))
