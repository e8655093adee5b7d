"""CoKe centres / duals / labels and the LOOK memory: 2 gloo processes equal 1 process on the global batch."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_keep_the_state_of_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    two = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(HERE / "coke_ddp_worker.py"), str(tmp_path / "two.pt")]
    one = [sys.executable, str(HERE / "coke_ddp_worker.py"), str(tmp_path / "one.pt")]
    for cmd in (two, one):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    a, b = torch.load(tmp_path / "two.pt", weights_only=True), torch.load(tmp_path / "one.pt", weights_only=True)
    for part in ("coke", "look"):
        assert a[part].keys() == b[part].keys()
        for k in b[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=1e-5, atol=1e-6, msg=f"{part}.{k}")
    assert (b["coke"]["clusterings.0.labels"][:, 0] >= 0).all()  # every instance got a label
    torch.testing.assert_close(a["losses"], b["losses"], rtol=1e-5, atol=1e-6)
