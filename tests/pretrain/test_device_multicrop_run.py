"""data.device_augment in DINO pre-training: the views are made on the device; the run trains and resumes."""
import math

from reidkit.methods.pretrain_dino import pretrain
from reidkit.utils.checkpoint import load_state


def test_dino_with_device_multicrop_trains(pool, micro_config, tmp_path, monkeypatch):
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    out = pretrain(micro_config(pool, tmp_path / "run", **{"data.device_augment": True}))
    state = load_state(out / "last.pt")
    assert state["epoch"] == 2
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) > 1 and all(math.isfinite(float(v)) for v in rows[-1].split(",")[1:2])
