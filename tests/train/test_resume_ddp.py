"""A real training process killed with SIGKILL and resumed ends exactly where an uninterrupted run
ends; two DDP processes (gloo, CPU) train together and keep identical weights."""
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import yaml

from cli_processes import csv_rows, quiet_env, start_reidkit

from reidkit.utils.io import load_tensors


def _write_cfg(path, root, out, **data):
    cfg = {"data": {"root": str(root), "size": [64, 32], "batch_size": 8, "num_workers": 0, **data},
           "model": {"preset": "vit_micro"},
           "solver": {"epochs": 4, "warmup_epochs": 1, "lr": 0.01},
           "eval": {"every": 2, "num_workers": 0}, "output": str(out)}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(cfg, *args):
    return start_reidkit("train", cfg, *args)


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(tiny_market, tmp_path):
    # run A: uninterrupted, 2 loader workers + decoded cache; run B: no workers, no cache, killed, resumed
    a_cfg = _write_cfg(tmp_path / "a.yaml", tiny_market, tmp_path / "a", num_workers=2, cache="memory")
    b_cfg = _write_cfg(tmp_path / "b.yaml", tiny_market, tmp_path / "b", num_workers=0, cache="none")
    a = _train(a_cfg)
    b = _train(b_cfg)
    deadline = time.time() + 240
    while len(csv_rows(tmp_path / "b" / "log.csv")) < 1 and b.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    b.send_signal(signal.SIGKILL)
    b.wait()
    assert b.returncode == -signal.SIGKILL, b.stdout.read()
    done = len(csv_rows(tmp_path / "b" / "log.csv"))
    assert 1 <= done < 4, "the run must be killed mid-way"
    resumed = _train(b_cfg, "--resume")
    out_b, _ = resumed.communicate(timeout=300)
    out_a, _ = a.communicate(timeout=300)
    assert a.returncode == 0, out_a
    assert resumed.returncode == 0, out_b
    assert "resumed" in out_b and "after epoch" in " ".join(out_b.split())
    ta, _ = load_tensors(tmp_path / "a" / "last.safetensors")
    tb, _ = load_tensors(tmp_path / "b" / "last.safetensors")
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    ra, rb = csv_rows(tmp_path / "a" / "log.csv"), csv_rows(tmp_path / "b" / "log.csv")
    assert [r["step"] for r in rb] == [str(e) for e in range(1, 5)]
    for x, y in zip(ra, rb):
        for col in ("loss", "mAP", "R1", "mINP", "lr"):
            assert x[col] == y[col], (col, x["step"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_gloo_processes_train_and_agree(tiny_market, tmp_path):
    out = tmp_path / "ddp"
    cfg = _write_cfg(tmp_path / "ddp.yaml", tiny_market, out)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "reidkit.cli.main", "train", str(cfg), "solver.epochs=2", "data.batch_size=16"]
    proc = subprocess.run(cmd, env=quiet_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_agree"] is True
    rows = csv_rows(out / "log.csv")
    assert len(rows) == 2 and float(rows[-1]["loss"]) < float(rows[0]["loss"]) + 1.0
    assert rows[-1]["mAP"]
