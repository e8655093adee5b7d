"""DDP: 2 gloo processes x 4 images equal 1 process x 8 images (same global batches, same views,
all-reduced gradients and centre), and a corrupt image on one rank is skipped, never fatal."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reidkit.utils.checkpoint import load_state

HERE = Path(__file__).parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc, pool, out, batch):
    env = {**os.environ, "REIDKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
           str(HERE / "ddp_worker.py"), str(pool), str(out), str(batch)]
    if nproc == 1:
        cmd = [sys.executable, str(HERE / "ddp_worker.py"), str(pool), str(out), str(batch)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_equal_one_with_the_global_batch(pool, tmp_path):
    for i in range(4):  # 16 images: 2 global batches of 8
        (pool / "sub0" / f"copy_{i}.jpg").write_bytes((pool / "sub1" / f"img_{2 * i + 1:03d}.jpg").read_bytes())
    launch(2, pool, tmp_path / "ddp", 4)
    launch(1, pool, tmp_path / "single", 8)
    a, b = load_state(tmp_path / "ddp" / "last.pt"), load_state(tmp_path / "single" / "last.pt")
    for k in b["teacher"]:
        torch.testing.assert_close(a["teacher"][k], b["teacher"][k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a["dino_loss"]["center"], b["dino_loss"]["center"], rtol=1e-4, atol=1e-6)
    assert len(a["rng"]) == 2
    # the logged loss is the global batch's (all-reduced), so the two logs agree too
    import csv
    la = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "ddp" / "log.csv"))]
    lb = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "single" / "log.csv"))]
    assert la == pytest.approx(lb, rel=1e-4)
