"""ONNX export parity in onnxruntime for every stem, SIE, and the ResNet baselines (max abs < 1e-4)."""
import pytest
import torch

from reidkit.models import build_model
from reidkit.models.export_onnx import export_onnx


def _train_a_step(model):
    """Move BN running statistics away from their init so the BN path is really exercised."""
    model.train()
    h, w = model.spec.img_size
    cams = torch.tensor([0, 1, 0, 1]) if model.spec.sie_cameras else None
    with torch.no_grad():
        model(torch.randn(4, 3, h, w) * 2 + 0.5, cams)
    return model.eval()


@pytest.mark.parametrize("preset,overrides", [
    ("vit_micro", {}),
    ("vit_micro_conv", {}),
    ("vit_micro_ics", {"neck_feat": "after"}),
    ("vit_micro", {"sie_cameras": 2, "stride": 8, "knn_k": 4}),
])
def test_onnx_parity_vit(tmp_path, preset, overrides):
    torch.manual_seed(0)
    model = _train_a_step(build_model(preset, **overrides))
    result = export_onnx(model, tmp_path / "m.onnx", check_batch_sizes=(1, 3))
    assert result.path.is_file() and result.max_abs_diff < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["resnet50", "resnet50_ibn_a"])
def test_onnx_parity_resnets(tmp_path, preset):
    torch.manual_seed(0)
    model = _train_a_step(build_model(preset, img_size=(64, 32)))
    result = export_onnx(model, tmp_path / "r.onnx", check_batch_sizes=(3,))
    assert result.max_abs_diff < 1e-4
