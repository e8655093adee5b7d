"""issue 16 item 7: a recipe typo, a missing config, a wrong data path or a bad value in train, pretrain
and adapt fails before torch is imported (so within the start-up time of `reidkit --help`)."""
import subprocess
import sys

import pytest

PROBE = """
import sys
from reidkit.cli.main import app
try:
    app(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
except Exception as e:
    print('raised', type(e).__name__, e)
print('TORCH-IMPORTED' if 'torch' in sys.modules else 'TORCH-NOT-IMPORTED')
"""


def _probe(*args):
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)
    return r.stdout + r.stderr


@pytest.mark.parametrize("args,msg", [
    (["train", "configs/finetune/synth_tiny_ics.yaml", "solver.lrr=1"], "unknown key"),
    (["train", "configs/finetune/nope.yaml"], "config file not found"),
    (["train", "configs/finetune/synth_tiny_ics.yaml", "data.root=/no/such/folder"], "data.root=/no/such/folder: no such"),
    (["train", "configs/finetune/synth_tiny_ics.yaml", "data.num_instances=0"], "data.num_instances=0 must be > 0"),
    (["pretrain", "configs/pretrain/synth_tiny.yaml", "output_dir=x"], "`output_dir` is now `output`"),
    (["pretrain", "configs/pretrain/synth_tiny.yaml", "data.batch_size=0"], "data.batch_size=0 must be > 0"),
    (["pretrain", "configs/pretrain/coke_synth_tiny.yaml", "coke.beta=2"], "coke.beta=2.0: use a value in [0.0, 1.0]"),
    (["pretrain", "configs/pretrain/coke_synth_tiny.yaml", "coke.soft_labels=3"], "`coke.soft_labels` is now"),
    (["pretrain", "configs/pretrain/look_synth_tiny.yaml", "look.k=2.5"], "look.k: expected an integer, got 2.5"),
    (["pretrain", "configs/pretrain/look_synth_tiny.yaml", "head.out_dimm=3"], "unknown key"),
    (["adapt", "configs/adapt/synth_tiny_usl.yaml", "data.root=/no/such/folder"], "no such file or folder"),
    (["adapt", "configs/adapt/synth_tiny_usl.yaml", "model.knn_k=0.0"], "model.knn_k=0.0"),
    (["distill", "configs/video/synth_tiny_tcl.yaml", "data.num_instances=3"], "not a multiple of num_instances=3"),
    (["distill", "configs/video/synth_tiny_tcl.yaml", "data.root=/no/such/folder"], "no such file or folder"),
    (["distill", "configs/video/synth_tiny_tcl.yaml", "train.seed=1"], "`train.seed` is now `seed`"),
    (["distill", "configs/video/synth_tiny_tcl.yaml", "student.drop_path_rate=1.5"], "student.drop_path_rate=1.5"),
])
def test_recipe_errors_come_before_torch(args, msg):
    out = _probe(*args)
    assert msg in " ".join(out.split()), out
    assert "TORCH-NOT-IMPORTED" in out, out
