"""issue 16 item 11: a DINO pre-training process killed with SIGKILL and resumed ends bit-identical to an
uninterrupted run (the test train's tests/train/test_resume_ddp.py runs for fine-tuning)."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from reidkit.utils.io import load_tensors


def _cfg(path, pool, out):
    cfg = {"output": str(out), "precision": "fp32", "device": "cpu", "log_every": 1, "checkpoint_every": 1,
           "data": {"root": str(pool), "batch_size": 4, "num_workers": 0},
           "crops": {"global_size": [64, 32], "local_size": [32, 16], "local_crops_number": 2},
           "model": {"preset": "vit_micro", "drop_path_rate": 0.1},
           "head": {"out_dim": 32, "hidden_dim": 32, "bottleneck_dim": 16},
           "solver": {"epochs": 3, "warmup_epochs": 1}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _pretrain(cfg, *args):
    env = dict(os.environ, REIDKIT_PROGRESS="0", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return subprocess.Popen([sys.executable, "-m", "reidkit.cli.main", "pretrain", str(cfg), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rows(path):
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_pretrain_killed_with_sigkill_resumes_bit_identical(pool, tmp_path):
    a = _pretrain(_cfg(tmp_path / "a.yaml", pool, tmp_path / "a"))
    b_cfg = _cfg(tmp_path / "b.yaml", pool, tmp_path / "b")
    b = _pretrain(b_cfg)
    deadline = time.time() + 240
    while len(_rows(tmp_path / "b" / "log.csv")) < 4 and b.poll() is None and time.time() < deadline:
        time.sleep(0.02)  # killed in epoch 2 (3 iterations per epoch), after its mid-epoch checkpoint
    b.send_signal(signal.SIGKILL)
    b.wait()
    assert b.returncode == -signal.SIGKILL, b.stdout.read()
    assert 4 <= len(_rows(tmp_path / "b" / "log.csv")) < 9, "the run must be killed mid-way"
    resumed = _pretrain(b_cfg, "--resume")
    out_b, _ = resumed.communicate(timeout=300)
    out_a, _ = a.communicate(timeout=300)
    assert a.returncode == 0, out_a
    assert resumed.returncode == 0, out_b
    assert "resumed" in out_b
    ta, _ = load_tensors(tmp_path / "a" / "last.safetensors")
    tb, _ = load_tensors(tmp_path / "b" / "last.safetensors")
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    sa, sb = torch.load(tmp_path / "a" / "last.pt", weights_only=True), torch.load(tmp_path / "b" / "last.pt",
                                                                                   weights_only=True)
    for part in ("student", "teacher"):
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), (part, k)
    ra, rb = _rows(tmp_path / "a" / "log.csv"), _rows(tmp_path / "b" / "log.csv")
    assert [r["step"] for r in rb] == [str(s) for s in range(1, 10)]
    for x, y in zip(ra, rb):
        for col in ("loss", "lr", "wd", "teacher_momentum"):
            assert x[col] == y[col], (col, x["step"])
