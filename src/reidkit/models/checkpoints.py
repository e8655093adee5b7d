"""Every foreign checkpoint layout, mapped onto our keys in this one file. Safe loading only.

Accepted (``transreid_ssl.md`` section 8):

* TransReID-SSL DINO pre-training: the raw ``checkpoint.pth`` (``{'teacher', 'student', ...}``;
  ``module.`` on ICS teachers and on every student, then ``backbone.``; the DINO projection
  ``head.*`` is dropped) and the converted flat backbone dict (``cls_token``, ``pos_embed``,
  ``patch_embed.*`` incl. the ICS ``patch_embed.conv.{0,1,3,4,6,7}``, ``blocks.*``, ``norm.*``);
* TransReID-SSL supervised fine-tuning (``transformer_120.pth``): ``base.*`` backbone, the unused
  ``base.fc.*`` (dropped), ``bottleneck.*`` BNNeck and ``classifier.weight``; optional ``module.``;
* cluster-contrast USL/UDA (``model_best.pth.tar``): ``{'state_dict': {'module.<backbone>',
  'module.bottleneck.*'}}``; its ResNet models (``base.0/1/4..7`` Sequential, ``feat_bn``) too;
* timm and DINO (facebookresearch) ViT weights: flat timm names, classifier ``head.*`` dropped,
  ``pos_embed`` of a square 14x14 grid resized; torchvision / IBN-Net ResNet-50 weights (``fc`` dropped);
* our own files (``backbone.*``, ``head.*``).

Containers ``{'state_dict': ...}`` / ``{'model': ...}`` are unwrapped. Files are read with
safetensors or ``torch.load(weights_only=True)``: a pickle that needs arbitrary code is refused.
``pos_embed`` is resized bilinearly from the checkpoint's grid (hw_ratio rule) to the model's.
Missing and unexpected keys are reported, and by default are errors (missing head keys are only
reported: a pre-trained backbone has no head). A shape mismatch names the tensor and both shapes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from reidkit.models.vit import ReIDViT, infer_grid, resize_pos_embed
from reidkit.utils.checkpoint import CheckpointError  # one error class for every checkpoint (re-exported)
from reidkit.utils.checkpoint import unsafe_load_message  # noqa: F401  (re-exported)


# Keys dropped on purpose, with the reason shown in the report.
_DROPPED = [
    (re.compile(r"^fc\."), "unused classifier of the backbone (TransReID base.fc / ImageNet fc)"),
    (re.compile(r"^head\.(?!bottleneck\.|classifier\.)"), "DINO projection head / ImageNet classifier"),
    (re.compile(r"^(head_dist|dist_token|pre_logits|fc_norm)"), "distillation / pre-logits parts"),
    (re.compile(r"^classifier_"), "auxiliary classifiers"),
]
# cluster-contrast's ResNet keeps torchvision's children in an nn.Sequential called ``base``.
_CC_RESNET = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


@dataclass
class LoadReport:
    """What a :func:`load_weights` call did, key by key (our names)."""

    source: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)   # checkpoint key -> reason
    resized: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.source}: {self.layout}; loaded {len(self.loaded)} tensors"]
        if self.resized:
            lines.append(f"  resized: {', '.join(self.resized)}")
        if self.dropped:
            reasons: dict[str, int] = {}
            for r in self.dropped.values():
                reasons[r] = reasons.get(r, 0) + 1
            lines += [f"  dropped {n} key(s): {r}" for r, n in reasons.items()]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): {', '.join(self.missing[:12])}"
                         + (" ..." if len(self.missing) > 12 else ""))
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): {', '.join(self.unexpected[:12])}"
                         + (" ..." if len(self.unexpected) > 12 else ""))
        return "\n".join(lines)


def _data_only_globals() -> list:
    """Plain-data types that official training checkpoints pickle next to the weights.

    DINO stores its ``args`` as an ``argparse.Namespace``; cluster-contrast its ``best_mAP`` as a
    numpy scalar. Neither runs code when unpickled, so they are allowed; anything else is refused.
    """
    import argparse

    import numpy as np
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool")]
    return [argparse.Namespace, np.dtype, scalar, (scalar, "numpy.core.multiarray.scalar"), *dtypes]


def read_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file safely: safetensors, or a torch pickle restricted to tensors/containers."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:
            raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
    try:
        with torch.serialization.safe_globals(_data_only_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for unsafe pickles, RuntimeError for non-zip files ...
        raise CheckpointError(unsafe_load_message(path, e)) from None


def unwrap(obj, which: str = "teacher") -> tuple[dict[str, torch.Tensor], str]:
    """The flat ``{name: tensor}`` inside a checkpoint container, and a name for the layout."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"expected a dict of tensors, got {type(obj).__name__}")
    layout = "flat state dict"
    if "teacher" in obj or "student" in obj:
        if which not in obj:
            raise CheckpointError(f"DINO checkpoint has no {which!r} entry (has {sorted(obj)[:8]})")
        obj, layout = obj[which], f"DINO training checkpoint ({which})"
    elif "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj, layout = obj["state_dict"], "{'state_dict': ...} container"
    elif "model" in obj and isinstance(obj["model"], dict):
        obj, layout = obj["model"], "{'model': ...} container"
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"no tensors found in the checkpoint (keys {sorted(obj)[:8]})")
    return tensors, layout


def map_key(key: str) -> tuple[str | None, str]:
    """A foreign key -> (our ReIDModel key or None when dropped, reason when dropped)."""
    k = key
    while k.startswith("module."):
        k = k[len("module."):]
    for prefix in ("backbone.", "base."):
        if k.startswith(prefix) and not re.match(r"^base\.\d+\.", k):
            k = k[len(prefix):]
    m = re.match(r"^base\.(\d+)\.(.*)$", k)
    if m:
        if m.group(1) not in _CC_RESNET:
            return None, "unknown cluster-contrast ResNet child"
        k = f"{_CC_RESNET[m.group(1)]}.{m.group(2)}"
    if k.startswith(("head.bottleneck.", "head.classifier.", "pool.")):
        return k, ""
    if k.startswith(("bottleneck.", "feat_bn.")):
        return "head.bottleneck." + k.split(".", 1)[1], ""
    if k.startswith("classifier.") and k.count(".") == 1:
        return "head.classifier." + k.split(".", 1)[1], ""
    for pattern, reason in _DROPPED:
        if pattern.match(k):
            return None, reason
    return "backbone." + k, ""


def _model_grid(target: nn.Module) -> tuple[int, int] | None:
    vit = target.backbone if hasattr(target, "backbone") else target
    return tuple(vit.patch_embed.grid_size) if isinstance(vit, ReIDViT) else None


def load_weights(target: nn.Module, source, which: str = "teacher", head: bool = True,
                 strict: bool = True, src_grid: tuple[int, int] | None = None) -> LoadReport:
    """Load a checkpoint (path or dict) of any known layout into a ReIDModel or a bare backbone.

    ``which``: the DINO training checkpoint entry (``'teacher'``, as the official converter does,
    or ``'student'``). ``head=False`` skips the BNNeck and classifier (cluster-contrast's UDA start
    from a supervised model). ``strict``: missing backbone keys or unexpected keys raise
    :class:`CheckpointError` (after the whole report is built). ``src_grid``: the checkpoint's
    position grid when it cannot be inferred. Returns the :class:`LoadReport`.
    """
    name = str(source) if isinstance(source, (str, Path)) else "<state dict>"
    raw = read_checkpoint(source) if isinstance(source, (str, Path)) else source
    tensors, layout = unwrap(raw, which)
    into_backbone = not hasattr(target, "backbone")
    own = target.state_dict()
    report = LoadReport(source=name, layout=layout)
    new: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        ours, reason = map_key(key)
        if ours is not None and not head and ours.startswith("head."):
            ours, reason = None, "head skipped (head=False)"
        if ours is not None and into_backbone:
            if ours.startswith("backbone."):
                ours = ours[len("backbone."):]
            else:
                ours, reason = None, "head keys are ignored when loading into a backbone"
        if ours is not None and ours.startswith("head.classifier.") and ours not in own:
            ours, reason = None, "the model has no classifier (num_classes=0)"
        if ours is None:
            report.dropped[key] = reason
            continue
        if ours not in own:
            report.unexpected.append(key)
            continue
        want = own[ours].shape
        if ours.endswith("pos_embed") and value.shape != want and value.ndim == 3 \
                and value.shape[-1] == want[-1]:
            grid = _model_grid(target)
            old = src_grid or infer_grid(value.shape[1] - 1, (grid[0] / grid[1]) if grid else None)
            value = resize_pos_embed(value, old, grid, num_prefix=1, mode="bilinear")
            report.resized.append(f"{ours} {old[0]}x{old[1]} -> {grid[0]}x{grid[1]}")
        if value.shape != want:
            raise CheckpointError(
                f"{name}: tensor {key!r} (ours {ours!r}) has shape {tuple(value.shape)} in the "
                f"checkpoint but {tuple(want)} in the model"
                + ("; pass head=False (--no-head) to skip the classifier" if "classifier" in ours else ""))
        new[ours] = value.to(own[ours].dtype)
        report.loaded.append(ours)
    report.missing = [k for k in own if k not in new]
    target.load_state_dict(new, strict=False)
    if strict:
        missing_body = [k for k in report.missing if not k.startswith(("head.", "pool."))]
        if missing_body or report.unexpected:
            raise CheckpointError("checkpoint does not match the model:\n" + report.summary())
    return report
