"""End of ``reidkit train`` / ``reidkit adapt`` (issue 16 items 4 and 8): the HTML report goes into
the run folder (a failure there is a warning, never a lost run), and the end message names only the
model files that exist. The training itself is replaced by a stand-in that writes a finished run
folder (the report and the run are tested on their own in tests/report and tests/engine)."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidkit.cli.main import app

LOG = "step,loss,acc,lr,mAP,R1\n1,5.0,0.1,0.001,,\n2,4.0,0.3,0.001,20.0,30.0\n"


def _fake_run(out: Path, best: bool) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text("data:\n  format: market1501\n  root: /nowhere\n")
    (out / "log.csv").write_text(LOG)
    (out / "last.pt").write_bytes(b"")
    (out / "last.safetensors").write_bytes(b"")
    if best:
        (out / "best.safetensors").write_bytes(b"")
    return out


@pytest.fixture()
def fake_training(monkeypatch):
    import reidkit.methods.finetune as finetune
    import reidkit.workflows.uda as uda

    best = {"value": True}
    monkeypatch.setattr(finetune, "train", lambda cfg, **kw: _fake_run(Path(cfg.output), best["value"]))
    monkeypatch.setattr(uda, "adapt_with_source", lambda cfg, say=None, **kw: _fake_run(Path(cfg.output), best["value"]))
    return best


def _invoke(verb, tmp_path, *extra):
    recipe = {"train": "configs/finetune/synth_tiny_ics.yaml", "adapt": "configs/adapt/synth_tiny_usl.yaml"}[verb]
    return CliRunner().invoke(app, [verb, recipe, f"data.root={tmp_path}", "--out", str(tmp_path / "run"), *extra])


@pytest.mark.parametrize("verb", ["train", "adapt"])
def test_run_end_writes_the_report_and_names_existing_models(verb, tmp_path, fake_training):
    fake_training["value"] = False  # adapt without evaluation: only last.safetensors
    r = _invoke(verb, tmp_path)
    assert r.exit_code == 0, r.output
    page = tmp_path / "run" / "report" / "index.html"
    assert page.is_file() and "training_curves.png" in page.read_text()
    assert "report:" in r.output and "last.safetensors" in r.output and "best.safetensors" not in r.output
    fake_training["value"] = True
    r = _invoke(verb, tmp_path, "--no-report")
    assert r.exit_code == 0 and "best.safetensors" in r.output and "report:" not in r.output


def test_a_failing_report_is_a_warning_not_a_lost_run(tmp_path, fake_training, monkeypatch):
    import reidkit.report.run_report as run_report

    def boom(run_dir, **kw):
        raise OSError("disk on fire")

    monkeypatch.setattr(run_report, "write_run_report", boom)
    r = _invoke("train", tmp_path)
    assert r.exit_code == 0, r.output
    assert "warning" in r.output and "disk on fire" in r.output and "reidkit report" in r.output
    assert (tmp_path / "run" / "last.pt").is_file()


def test_only_rank_zero_writes_the_report(tmp_path, fake_training, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    r = _invoke("train", tmp_path)
    assert r.exit_code == 0 and not (tmp_path / "run" / "report").exists()
