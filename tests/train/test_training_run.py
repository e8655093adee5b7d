"""The run-folder steps the training methods share: never overwrite a run, resume needs last.pt,
evaluation epochs, best-model bookkeeping, autocast precision."""
import pytest
import torch

from reidkit.config import load_config
from reidkit.methods.finetune import FinetuneConfig
from reidkit.methods.training_run import autocast_dtype, eval_due, keep_best, open_run_folder
from reidkit.utils.checkpoint import CheckpointError


class MyError(ValueError):
    pass


def test_open_run_folder_writes_config_and_guards_runs(tmp_path):
    cfg = load_config(FinetuneConfig, None, ["solver.lr=0.123"])
    out = tmp_path / "run"
    with pytest.raises(CheckpointError, match="nothing to resume"):
        open_run_folder(out, cfg, resume=True, error=MyError)
    assert not out.exists()
    assert open_run_folder(out, cfg, resume=False, error=MyError, write=False) == out / "last.pt"
    assert not out.exists()  # write=False (a DDP rank other than 0): checks only
    state = open_run_folder(out, cfg, resume=False, error=MyError)
    assert load_config(FinetuneConfig, out / "config.yaml").solver.lr == 0.123
    state.write_bytes(b"x")
    with pytest.raises(MyError, match=r"already holds a run.*--resume"):
        open_run_folder(out, cfg, resume=False, error=MyError)
    assert open_run_folder(out, cfg, resume=True, error=MyError) == state


@pytest.mark.parametrize("epochs,every", [(5, 0), (5, 2), (6, 3), (1, 1), (4, 10)])
def test_eval_due_every_n_and_the_last(epochs, every):
    got = [e for e in range(1, epochs + 1) if eval_due(e, epochs, every)]
    want = sorted({epochs} | (set(range(every, epochs + 1, every)) if every else set()))
    assert got == want


def test_keep_best_saves_only_improvements(tmp_path):
    from reidkit.models import build_model, load_model

    model = build_model("vit_micro", num_classes=0, img_size=(64, 32))
    best = {"mAP": -1.0, "epoch": 0}
    best = keep_best(model, {"mAP": 10.0}, best, 1, tmp_path)
    assert best == {"mAP": 10.0, "epoch": 1} and (tmp_path / "best.safetensors").is_file()
    first = load_model(tmp_path / "best.safetensors").state_dict()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert keep_best(model, {"mAP": 10.0}, best, 2, tmp_path) == best  # a tie is not an improvement
    kept = load_model(tmp_path / "best.safetensors").state_dict()
    assert all(torch.equal(first[k], kept[k]) for k in first)
    assert keep_best(model, {"mAP": 12.5}, best, 3, tmp_path) == {"mAP": 12.5, "epoch": 3}
    now = load_model(tmp_path / "best.safetensors").state_dict()
    assert any(not torch.equal(first[k], now[k]) for k in first)


def test_autocast_dtype():
    cpu = torch.device("cpu")
    assert autocast_dtype("none", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("fp16", torch.device("cuda")) is torch.float16
    with pytest.raises(MyError, match="fp16 needs a GPU"):
        autocast_dtype("fp16", cpu, MyError)
