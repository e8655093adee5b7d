"""Run by test_ddp.py under torchrun: the micro DINO recipe on 2 gloo processes."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import micro_config  # noqa: E402

from reidkit.methods.pretrain_dino import pretrain  # noqa: E402

torch.set_num_threads(1)
pool, out, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
pretrain(micro_config(pool, out, **{"data.batch_size": batch, "model.drop_path_rate": 0.0}))
