"""The run-folder steps the training methods share: never overwrite a run, resume needs last.pt,
evaluation epochs, best-model bookkeeping, autocast precision."""
import pytest
import torch

from reidkit.config import load_config
from reidkit.methods.finetune import FinetuneConfig
from reidkit.engine.precision import autocast_dtype
from reidkit.engine.run import eval_due, keep_best, open_run_folder
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
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("fp16", torch.device("cuda")) is torch.float16
    with pytest.raises(MyError, match="fp16 needs a CUDA GPU"):
        autocast_dtype("fp16", cpu, MyError)
    with pytest.raises(MyError, match="expected fp32, bf16 or fp16"):
        autocast_dtype("none", cpu, MyError)


def test_resume_prints_the_recipe_diff_and_refuses_breaking_changes(tmp_path, capsys):
    """issue 16 item 2: --resume with a changed recipe says what changed; model/data/batch need --force."""
    out = tmp_path / "run"
    cfg = load_config(FinetuneConfig, None, ["solver.epochs=8", "data.root=d"])
    open_run_folder(out, cfg, resume=False, error=MyError)
    (out / "last.pt").write_bytes(b"x")
    fewer = load_config(FinetuneConfig, None, ["solver.epochs=3", "data.root=d"])
    open_run_folder(out, fewer, resume=True, error=MyError)
    said = " ".join(capsys.readouterr().out.split())
    assert "solver.epochs: 8 -> 3 (applied)" in said
    bigger = load_config(FinetuneConfig, None, ["solver.epochs=3", "data.root=d", "data.batch_size=128",
                                                "model.preset=vit_base"])
    with pytest.raises(MyError, match=r"would not continue the same run.*--force") as err:
        open_run_folder(out, bigger, resume=True, error=MyError)
    assert "model.preset 'vit_small' -> 'vit_base'" in str(err.value) and "data.batch_size 64 -> 128" in str(err.value)
    open_run_folder(out, bigger, resume=True, error=MyError, force=True)
    assert "(breaks the run)" in capsys.readouterr().out
    assert load_config(FinetuneConfig, out / "config.yaml").model.preset == "vit_base"


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    """issue 16 item 14: .last.pt.*.tmp files of a killed save are deleted when the run folder is opened."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".last.pt.abc123.tmp").write_bytes(b"\0" * 1000)
    (out / ".log.csv.x.tmp").write_bytes(b"half")
    (out / "keep.txt").write_text("mine")
    cfg = load_config(FinetuneConfig, None, [])
    open_run_folder(out, cfg, resume=False, error=MyError)
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "keep.txt"]


def test_nan_guard_names_the_place_and_keeps_the_checkpoint(tmp_path):
    from reidkit.engine.distributed import Dist
    from reidkit.engine.run import Run
    from reidkit.utils.checkpoint import NonFiniteLossError

    run = Run(load_config(FinetuneConfig, None, []), Dist(), torch.device("cpu"), None, tmp_path, False)
    run.guard(torch.tensor(1.0), "epoch 1, iteration 1", "hint")
    with pytest.raises(NonFiniteLossError, match=r"nan.*epoch 2, iteration 5.*no checkpoint was written yet.*hint"):
        run.guard(torch.tensor(float("nan")), "epoch 2, iteration 5", "hint")


def test_a_log_row_lost_by_a_kill_after_the_checkpoint_is_rebuilt(tmp_path):
    """issue 16 item 14: killed after last.pt was replaced but before log.csv got the epoch's row."""
    import csv

    import numpy as np

    from reidkit.engine.distributed import Dist
    from reidkit.engine.run import Run
    from reidkit.utils.checkpoint import load_state
    from reidkit.utils.metric_log import MetricLog

    cfg = load_config(FinetuneConfig, None, [])
    run = Run(cfg, Dist(), torch.device("cpu"), None, tmp_path, False, MetricLog(tmp_path / "log.csv", False))
    run.log_row(1, loss=2.5)
    run.save({"epoch": 2, "log_row": {"loss": np.float64(1.25), "clusters": 7}})  # then the "kill"
    state = load_state(tmp_path / "last.pt")
    again = Run(cfg, Dist(), torch.device("cpu"), None, tmp_path, True, MetricLog(tmp_path / "log.csv", False))
    again.resume_log(state["epoch"], state)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [(r["step"], r["loss"]) for r in rows] == [("1", "2.5"), ("2", "1.25")] and rows[1]["clusters"] == "7"


def test_resume_geometry_and_per_rank_rng(tmp_path):
    """The per-iteration methods (DINO, CoKe, LOOK) resume only with the same iterations per epoch and global
    batch; each rank gets back its own RNG state (rank 0's when the run had fewer ranks)."""
    import random

    from reidkit.engine.distributed import Dist
    from reidkit.engine.run import Run

    run = Run(load_config(FinetuneConfig, None, []), Dist(), torch.device("cpu"), None, tmp_path, True)
    run.check_steps({"iters_per_epoch": 5, "global_batch": 64}, 5, 64)
    run.check_steps({}, 5, 64)  # a state written before these keys existed
    with pytest.raises(CheckpointError, match="had 5 iterations per epoch of 64 images, now 5 of 32"):
        run.check_steps({"iters_per_epoch": 5, "global_batch": 64}, 5, 32)
    states = run.rng_states()
    assert len(states) == 1
    want = (torch.rand(3), random.random())
    run.restore_rng(states)
    assert torch.equal(torch.rand(3), want[0]) and random.random() == want[1]
    run.dist = Dist(rank=1, world=2)
    torch.rand(5)
    run.restore_rng(states)  # one saved rank: rank 1 takes rank 0's
    assert torch.equal(torch.rand(3), want[0])
