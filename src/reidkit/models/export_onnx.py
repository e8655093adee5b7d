"""ONNX export of a ReID model: the eval-mode test feature, dynamic batch, checked in onnxruntime.

We use the TorchScript-based exporter (``dynamo=False``): it maps ``InstanceNorm2d`` (the IBN halves
of ICS and ResNet-IBN-a) to ONNX ``InstanceNormalization`` per sample, so the graph stays valid for
any batch size. The parity check runs the file on batch sizes other than the one traced with and
reports the largest absolute difference to PyTorch.

Inputs: ``images`` (B, 3, H, W) float32 (normalised like the test transform), and ``camids`` (B,)
int64 for models with the SIE camera embedding. Output: ``features`` (B, D) float32, not
L2-normalised (as ``model.eval()(x)``).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reidkit.models.reid_model import ReIDModel


class OnnxExportError(ValueError):
    """The exported graph disagrees with PyTorch beyond the tolerance."""


@dataclass
class OnnxExport:
    path: Path
    max_abs_diff: float | None   # None when the parity check was skipped
    batch_sizes: tuple[int, ...]
    img_size: tuple[int, int]


class _Exportable(nn.Module):
    def __init__(self, model: ReIDModel, sie: bool) -> None:
        super().__init__()
        self.model, self.sie = model, sie

    def forward(self, images: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(images, camids) if self.sie else self.model(images)


def _uses_sie(model: ReIDModel) -> bool:
    return getattr(model.backbone, "sie_embed", None) is not None


def _inputs(model: ReIDModel, batch: int, img_size, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed + batch)
    images = torch.randn(batch, 3, *img_size, generator=g)
    if not _uses_sie(model):
        return (images,)
    return images, torch.randint(0, model.backbone.sie_embed.shape[0], (batch,), generator=g)


def export_onnx(model: ReIDModel, path: str | Path, img_size: tuple[int, int] | None = None,
                opset: int = 17, check: bool = True, atol: float = 1e-4,
                check_batch_sizes: tuple[int, ...] = (1, 3)) -> OnnxExport:
    """Write ``model`` (eval mode, on CPU) to ``path`` atomically; optionally verify it in onnxruntime."""
    from reidkit.utils.io import atomic_write

    img_size = tuple(img_size or model.spec.img_size)
    net = _Exportable(copy.deepcopy(model).cpu().float().eval(), _uses_sie(model)).eval()
    args = _inputs(model, 2, img_size)
    names = ["images", "camids"][:len(args)]
    axes = {n: {0: "batch"} for n in names} | {"features": {0: "batch"}}

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about IN in eval, shape-dependent branches
            torch.onnx.export(net, args, tmp, input_names=names, output_names=["features"],
                              dynamic_axes=axes, opset_version=opset, dynamo=False,
                              do_constant_folding=True)

    path = atomic_write(path, write)
    diff = onnx_parity(net.model, path, img_size, check_batch_sizes) if check else None
    if diff is not None and diff > atol:
        raise OnnxExportError(f"{path}: ONNX output differs from PyTorch by {diff:.2e} (> {atol:.0e})")
    return OnnxExport(path, diff, tuple(check_batch_sizes) if check else (), img_size)


def onnx_parity(model: ReIDModel, path: str | Path, img_size=None,
                batch_sizes: tuple[int, ...] = (1, 3)) -> float:
    """Max |onnxruntime - PyTorch| over random inputs of the given batch sizes."""
    import onnxruntime as ort

    img_size = tuple(img_size or model.spec.img_size)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    model = model.eval()
    worst = 0.0
    for b in batch_sizes:
        args = _inputs(model, b, img_size, seed=17)
        with torch.no_grad():
            ref = model(*args).numpy()
        out = session.run(["features"], {n: a.numpy() for n, a in zip(names, args)})[0]
        if out.shape != ref.shape:
            raise OnnxExportError(f"{path}: ONNX output shape {out.shape} != PyTorch {ref.shape} at batch {b}")
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst
