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
