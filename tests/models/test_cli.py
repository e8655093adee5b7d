"""``reidkit models``, ``reidkit extract`` and ``reidkit export onnx`` end to end on tiny inputs."""
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from reidkit.cli.main import app
from reidkit.evaluation.featurefile import load_features
from reidkit.models import build_model, save_model

runner = CliRunner()


def _market(root, n_ids=3):
    rng = np.random.default_rng(0)
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (root / folder).mkdir(parents=True)
        for pid in range(1, n_ids + 1):
            for cam in (1, 2):
                img = Image.fromarray(rng.integers(0, 255, (40, 20, 3), dtype=np.uint8))
                img.save(root / folder / f"{pid:04d}_c{cam}s1_000{pid}{cam}_01.jpg")
    return root


def test_models_table_lists_the_spec_counts():
    result = runner.invoke(app, ["models", "--no-flops"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    for count in ("21,639,552", "23,001,024", "88,385,856"):
        assert count in result.output
    assert "vit_tiny_ics" in result.output and "resnet50_ibn_a" in result.output


def test_extract_split_and_folder(tmp_path):
    root = _market(tmp_path / "market")
    model = build_model("vit_micro_ics")
    path = save_model(model, tmp_path / "m.safetensors")
    out = tmp_path / "q.safetensors"
    result = runner.invoke(app, ["extract", "--model", str(path), "--data", str(root), "--split", "query",
                                 "--out", str(out), "--workers", "0", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    fs = load_features(out)
    assert fs.features.shape == (6, 64) and sorted(set(fs.pids.tolist())) == [1, 2, 3]
    assert sorted(set(fs.camids.tolist())) == [0, 1]

    # same images as a folder, via a preset + foreign-layout weights (official fine-tuned keys)
    sd = {("base." + k[len("backbone."):] if k.startswith("backbone.") else k): v
          for k, v in model.state_dict().items() if not k.startswith("head.")}
    torch.save(sd, tmp_path / "transformer_120.pth")
    out2 = tmp_path / "f.safetensors"
    result = runner.invoke(app, ["extract", "--preset", "vit_micro_ics", "--weights",
                                 str(tmp_path / "transformer_120.pth"), "--images", str(root / "query"),
                                 "--out", str(out2), "--workers", "0"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(load_features(out2).features, fs.features, atol=1e-5)


def test_extract_errors_are_one_line(tmp_path):
    result = runner.invoke(app, ["extract", "--preset", "vit_micro", "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 2 and "--data" in result.output
    result = runner.invoke(app, ["extract", "--preset", "vit_nope", "--images", str(tmp_path),
                                 "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 2 and "vit_nope" in result.output


def test_export_onnx_prints_parity(tmp_path):
    path = save_model(build_model("vit_micro"), tmp_path / "m.safetensors")
    result = runner.invoke(app, ["export", "onnx", str(path), str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "parity" in result.output and (tmp_path / "m.onnx").is_file()
