"""Smoke test of the README's main command: `reidkit demo --fast`, with a micro ViT to stay quick."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidkit.cli.main import app


@pytest.mark.slow
def test_demo_fast_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--fast", "--epochs", "1", "--workers", "1",
            "model.preset=vit_micro_ics", "data.size=[64,32]", "data.batch_size=16", "eval.enabled=false"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    text = res.output
    assert "colour histogram" in text and "ViT-tiny ICS, from scratch" in text
    assert "+ k-reciprocal" in text and "+ GCR" in text  # the re-ranked rows
    for key in ("mAP", "R1", "R5", "R10", "mINP"):
        assert key in text
    # the data went through the real Market-1501 layout, the model through a real run folder
    assert any((out / "data" / "city_a" / "query").glob("*_c*s*_*.jpg"))
    assert (out / "train" / "log.csv").is_file() and (out / "train" / "config.yaml").is_file()
    report = out / "report"
    for name in ("index.html", "cmc.png", "training_curves_0.png"):
        assert (report / name).is_file(), name
    ranked = sorted((report / "ranked_lists").glob("*.png"))
    assert len(ranked) == 8
    html = (report / "index.html").read_text()
    links = re.findall(r"src='([^']+)'", html)
    assert len(links) >= 10 and all((report / link).is_file() for link in links)
    # a second run reuses the finished steps instead of redoing them
    res2 = CliRunner().invoke(app, args)
    assert res2.exit_code == 0, res2.output
    assert "reusing" in res2.output
    # issue 16 item 1: a changed recipe never deletes the finished run; it is moved aside, checkpoints intact
    res3 = CliRunner().invoke(app, [*args, "solver.lr=0.002"])
    assert res3.exit_code == 0, res3.output
    prev = sorted(out.glob("train.prev-*"))
    assert len(prev) == 1 and "kept in" in " ".join(res3.output.split())
    assert (prev[0] / "last.pt").is_file() and (prev[0] / "last.safetensors").is_file()
    assert (out / "train" / "last.pt").is_file()


def test_same_folder_written_relative_or_absolute_is_no_change(tmp_path, monkeypatch):
    """issue 16 item 1: data.root went from relative to absolute: the same recipe, nothing retrained or moved."""
    import yaml

    from reidkit.config import load_config, to_dict
    from reidkit.methods.finetune import FinetuneConfig
    from reidkit.workflows.demo import move_aside, recipe_changes

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "city").mkdir(parents=True)
    run = tmp_path / "run"
    run.mkdir()
    rel = load_config(FinetuneConfig, None, ["data.root=data/city", f"output={run}"])
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(rel)))
    absolute = load_config(FinetuneConfig, None, [f"data.root={tmp_path / 'data' / 'city'}", f"output={run}"])
    assert recipe_changes(run / "config.yaml", absolute) == []
    changed = load_config(FinetuneConfig, None, ["data.root=data/city", "solver.lr=0.1", f"output={run}"])
    assert recipe_changes(run / "config.yaml", changed) == [("solver.lr", 4e-4, 0.1)]
    (run / "best.safetensors").write_bytes(b"weights")
    moved = move_aside(run)
    assert moved.name.startswith("run.prev-") and (moved / "best.safetensors").read_bytes() == b"weights"
    assert not run.exists()


@pytest.mark.slow
def test_rerun_table_keeps_the_colour_histogram_row(tmp_path, monkeypatch):
    """The printed results table has the colour-histogram row on a first run and on a re-run that reuses the
    benchmark from disk (training is left out here, as in a build without reidkit.methods.finetune)."""
    import reidkit.workflows.demo as demo

    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    monkeypatch.setattr(demo, "_module_available", lambda name, attr: False)
    args = ["demo", "--out", str(tmp_path / "demo"), "--fast", "--workers", "1"]
    for run in range(2):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        text = res.output
        assert ("reusing" in text) == (run == 1)
        table = text[text.index("results on the synthetic benchmark"):text.index("note:")]
        rows = [line for line in table.splitlines() if re.search(r"\d+\.\d", line)]
        assert len(rows) == 1 and rows[0].split("│")[1].strip().startswith("colour histogram"), table
