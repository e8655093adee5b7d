"""Parameter and FLOP counts of presets, computed on the meta device (no memory, no compute)."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from reidkit.models.presets import get_spec
from reidkit.models.reid_model import ReIDModel


def preset_stats(preset: str, **overrides) -> dict:
    """``{'params': backbone parameters, 'gflops': forward GFLOPs for one image at the preset's size}``.

    FLOPs count multiply and add separately (2 x MACs) for matmuls, convolutions and attention,
    as ``torch.utils.flop_counter`` does; norms and activations are not counted.
    """
    spec = get_spec(preset, **overrides)
    with torch.device("meta"):
        model = ReIDModel(spec).eval()
        x = torch.empty(1, 3, *spec.img_size)
        with FlopCounterMode(display=False) as counter:
            model(x, torch.zeros(1, dtype=torch.long) if spec.sie_cameras else None)
    return {"params": sum(p.numel() for p in model.backbone.parameters()),
            "gflops": counter.get_total_flops() / 1e9, "spec": spec}
