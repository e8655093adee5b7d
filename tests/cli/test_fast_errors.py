"""Errors that are fast and point the right way (issue 16, items 7 and 8).

Each wrong input is refused with one line that says what to do, *before* torch is imported (so
before any model is built or image read): checked in a fresh interpreter, where torch is absent from
``sys.modules`` after every refusal. No timing is asserted; bench-style figures are in the README.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from reidkit.cli.main import app

SRC = Path(__file__).resolve().parents[2] / "src"


def _refusals(tmp_path: Path) -> list[tuple[list[str], str]]:
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"x")
    (run / "best.safetensors").write_bytes(b"x")
    (tmp_path / "official.pth").write_bytes(b"x")
    (tmp_path / "manifest.csv").write_text("path,pid,camid,split\na.jpg,1,0,query\n")
    (tmp_path / "imgs").mkdir()
    data = ["--data", str(tmp_path / "imgs")]
    for name, dim in (("q8", 8), ("g6", 6)):  # features of two different models
        np.savez(tmp_path / f"{name}.npz", features=np.ones((4, dim), np.float32), pids=np.arange(4),
                 camids=np.full(4, int(name == "g6")))
    m = str(run / "best.safetensors")
    return [
        (["extract", "--out", str(tmp_path / "x.csv"), "--model", m, *data], "use .safetensors or .npz"),
        (["extract", "--out", str(tmp_path / "f.npz"), "--model", str(run / "last.pt"), *data],
         f"is a training state (weights, optimizer and RNG for --resume), not a model file; use {run / 'best.safetensors'}"),
        (["extract", "--out", str(tmp_path / "f.npz"), "--model", str(tmp_path / "official.pth"), *data],
         "--preset NAME --weights"),
        (["extract", "--out", str(tmp_path / "f.npz"), "--model", m, "--data", str(tmp_path / "manifest.csv")],
         "pass --format csv (-f csv)"),
        (["extract", "--out", str(tmp_path / "f.npz"), "--model", m, "-f", "csv", *data],
         "is a folder; --format csv takes the manifest file"),
        (["extract", "--out", str(tmp_path / "f.npz"), "--model", m, "--data", str(tmp_path / "nowhere")],
         "does not exist"),
        (["eval", str(tmp_path / "q.npz"), str(tmp_path / "g.npz")], "query feature file not found"),
        (["eval", str(tmp_path / "q8.npz"), str(tmp_path / "g6.npz"), "--rerank", "qe"],
         f"{tmp_path / 'q8.npz'} holds 8-d features but {tmp_path / 'g6.npz'} holds 6-d: extract both sides with the same model"),
        (["index", "build", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "ix"), "--model", m],
         "index its images with --dataset csv"),
        (["datasets", "check", str(tmp_path / "manifest.csv")], "pass --format csv (-f csv)"),
        (["report", str(tmp_path / "nowhere")], "run folder not found"),
    ]


def test_refusals_come_before_torch_and_say_what_to_do(tmp_path):
    cases = _refusals(tmp_path)
    script = textwrap.dedent(f"""
        import json, sys
        from typer.testing import CliRunner
        from reidkit.cli.main import app
        out = []
        for args in json.loads(sys.argv[1]):
            r = CliRunner().invoke(app, args)
            out.append([r.exit_code, r.output, "torch" in sys.modules])
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps([a for a, _ in cases])],
                          capture_output=True, text=True, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    for (args, expect), (code, output, torch_loaded) in zip(cases, json.loads(proc.stdout.splitlines()[-1])):
        assert code == 2, (args, output)
        assert expect in " ".join(output.split()), (args, output)
        assert len([ln for ln in output.splitlines() if ln.strip()]) == 1, (args, output)
        assert not torch_loaded, args


def test_eval_without_labels_gives_advice_that_fits(tmp_path):
    from reidkit.evaluation.featurefile import FeatureSet, save_features

    rng = np.random.default_rng(0)
    for name in ("q", "g"):
        save_features(FeatureSet(rng.normal(size=(6, 4)), np.full(6, -1), np.full(6, -1)), tmp_path / f"{name}.npz")
    r = CliRunner().invoke(app, ["eval", str(tmp_path / "q.npz"), str(tmp_path / "g.npz")])
    out = " ".join(r.output.split())
    assert "carry no identity labels" in out and "--protocol no-camera" not in out, r.output


def test_datasets_formats_lists_the_split_values():
    r = CliRunner().invoke(app, ["datasets", "formats"])
    assert r.exit_code == 0
    assert "splits: train, query, gallery" in " ".join(r.output.split())
