"""bf16 inference after prepare_for_inference stays within cosine 0.999 of fp32 (issue 3 target)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from reidkit.models import build_model
from reidkit.models.inference import amp_dtype, prepare_for_inference


def smooth_images(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, h // 8, w // 8, generator=g), size=(h, w), mode="bilinear") * 2 - 1


@pytest.mark.parametrize("preset,overrides", [
    ("vit_micro", {}), ("vit_micro_ics", {}), ("vit_micro_conv", {}),
])
def test_bf16_features_match_fp32(preset, overrides):
    torch.manual_seed(0)
    model = build_model(preset, **overrides).eval()
    x = smooth_images(4, 64, 32)
    with torch.inference_mode():
        ref = model(x)
        fast = prepare_for_inference(copy.deepcopy(model), "bf16")
        assert next(fast.parameters()).dtype == torch.bfloat16
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fast(x).float()
    assert F.cosine_similarity(out, ref).min() > 0.999


def test_channels_last_fp32_is_exact():
    model = build_model("vit_micro_ics").eval()
    x = smooth_images(2, 64, 32)
    with torch.inference_mode():
        ref = model(x)
        out = prepare_for_inference(copy.deepcopy(model), None, channels_last=True)(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_amp_names():
    assert amp_dtype("bf16") is torch.bfloat16 and amp_dtype(None) is None
    with pytest.raises(ValueError, match="fp8"):
        amp_dtype("fp8")


@pytest.mark.parametrize("preset", ["vit_micro_ics", "vit_micro_conv"])
def test_fused_stem_equals_the_stem_in_eval(preset):
    from reidkit.models.stems.fused import FusedConvStem
    torch.manual_seed(0)
    model = build_model(preset)
    model.train()
    with torch.no_grad():   # give BN non-trivial running stats and affine params
        model(torch.randn(8, 3, 64, 32) * 3 + 1)
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) and m.affine:
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    model.eval()
    x = smooth_images(3, 64, 32)
    with torch.inference_mode():
        ref = model(x)
        fused = prepare_for_inference(copy.deepcopy(model), None)
        assert isinstance(fused.backbone.patch_embed, FusedConvStem)
        torch.testing.assert_close(fused(x), ref, atol=1e-4, rtol=1e-4)
