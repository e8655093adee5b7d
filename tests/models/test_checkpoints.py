"""Official checkpoint layouts (transreid_ssl.md section 8), rebuilt here from the spec with random
tensors: every tensor must land in the right place, and wrong ones must give named errors."""
import argparse

import numpy as np
import pytest
import torch

from reidkit.models import build_model
from reidkit.models.checkpoints import CheckpointError, load_weights

D, DEPTH = 64, 2   # the vit_micro presets: 64 wide, 2 blocks, 64x32 input -> 4x2 grid


def official_backbone(ics: bool, grid=(4, 2), d=D, depth=DEPTH, gen=None) -> dict:
    """The backbone key list of section 8.1, written out by hand."""
    g = gen or torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    sd = {"cls_token": r(1, 1, d), "pos_embed": r(1, 1 + grid[0] * grid[1], d)}
    if ics:
        sd["patch_embed.proj.weight"] = r(d, 64, 8, 8)
        sd["patch_embed.conv.0.weight"] = r(64, 3, 7, 7)
        for i in (1, 4):
            for part in ("weight", "bias"):
                sd[f"patch_embed.conv.{i}.IN.{part}"] = r(32)
            for part in ("weight", "bias", "running_mean"):
                sd[f"patch_embed.conv.{i}.BN.{part}"] = r(32)
            sd[f"patch_embed.conv.{i}.BN.running_var"] = r(32).abs()
            sd[f"patch_embed.conv.{i}.BN.num_batches_tracked"] = torch.tensor(7)
        sd["patch_embed.conv.3.weight"] = r(64, 64, 3, 3)
        sd["patch_embed.conv.6.weight"] = r(64, 64, 3, 3)
        for part in ("weight", "bias", "running_mean"):
            sd[f"patch_embed.conv.7.{part}"] = r(64)
        sd["patch_embed.conv.7.running_var"] = r(64).abs()
        sd["patch_embed.conv.7.num_batches_tracked"] = torch.tensor(7)
    else:
        sd["patch_embed.proj.weight"] = r(d, 3, 16, 16)
    sd["patch_embed.proj.bias"] = r(d)
    for i in range(depth):
        for n in ("norm1", "norm2"):
            sd[f"blocks.{i}.{n}.weight"], sd[f"blocks.{i}.{n}.bias"] = r(d), r(d)
        sd[f"blocks.{i}.attn.qkv.weight"], sd[f"blocks.{i}.attn.qkv.bias"] = r(3 * d, d), r(3 * d)
        sd[f"blocks.{i}.attn.proj.weight"], sd[f"blocks.{i}.attn.proj.bias"] = r(d, d), r(d)
        sd[f"blocks.{i}.mlp.fc1.weight"], sd[f"blocks.{i}.mlp.fc1.bias"] = r(4 * d, d), r(4 * d)
        sd[f"blocks.{i}.mlp.fc2.weight"], sd[f"blocks.{i}.mlp.fc2.bias"] = r(d, 4 * d), r(d)
    sd["norm.weight"], sd["norm.bias"] = r(d), r(d)
    return sd


def assert_landed(model, expected: dict):
    """expected: our key -> tensor."""
    own = model.state_dict()
    for k, v in expected.items():
        assert torch.equal(own[k], v.to(own[k].dtype)), k


def test_backbone_key_count_matches_the_official_loader():
    # section 8.1: the fine-tune loader reports 150/152 (patchify) and 172/174 (ICS) at depth 12
    assert len(official_backbone(False, depth=12, d=384)) == 150
    assert len(official_backbone(True, depth=12, d=384)) == 172


@pytest.mark.parametrize("ics", [False, True])
def test_converted_dino_backbone(ics):
    model = build_model("vit_micro_ics" if ics else "vit_micro")
    sd = official_backbone(ics)
    report = load_weights(model, sd)
    assert not report.unexpected and not report.dropped
    assert all(k.startswith("head.") for k in report.missing)
    assert_landed(model, {"backbone." + k: v for k, v in sd.items()})


def test_raw_dino_checkpoint_takes_the_teacher_and_drops_the_projection_head(tmp_path):
    model = build_model("vit_micro_ics")
    teacher = official_backbone(True, gen=torch.Generator().manual_seed(1))
    student = official_backbone(True, gen=torch.Generator().manual_seed(2))
    head = {"head.mlp.0.weight": torch.randn(16, D), "head.mlp.0.bias": torch.randn(16),
            "head.last_layer.weight_g": torch.ones(32, 1), "head.last_layer.weight_v": torch.randn(32, 8)}
    ckpt = {
        # ICS teacher is DDP-wrapped (SyncBN): module.backbone.*; student always module.
        "teacher": {**{f"module.backbone.{k}": v for k, v in teacher.items()},
                    **{f"module.{k}": v for k, v in head.items()}},
        "student": {**{f"module.backbone.{k}": v for k, v in student.items()},
                    **{f"module.{k}": v for k, v in head.items()}},
        "optimizer": {"state": {}, "param_groups": []}, "epoch": 100,
        "args": argparse.Namespace(arch="ours_vit_small", patch_size=16),
        "dino_loss": {"center": torch.zeros(1, 32)}, "fp16_scaler": {"scale": 1024.0},
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(ckpt, path)
    report = load_weights(model, path)
    assert len(report.dropped) == 4 and not report.unexpected
    assert_landed(model, {"backbone." + k: v for k, v in teacher.items()})
    load_weights(model, path, which="student")
    assert_landed(model, {"backbone." + k: v for k, v in student.items()})


def test_finetuned_transreid_model_with_bnneck_and_classifier():
    model = build_model("vit_micro", num_classes=5)
    body = official_backbone(False)
    sd = {f"module.base.{k}": v for k, v in body.items()}
    sd["module.base.fc.weight"], sd["module.base.fc.bias"] = torch.randn(1000, D), torch.randn(1000)
    bn = {"weight": torch.rand(D), "bias": torch.zeros(D), "running_mean": torch.randn(D),
          "running_var": torch.rand(D), "num_batches_tracked": torch.tensor(3)}
    sd.update({f"module.bottleneck.{k}": v for k, v in bn.items()})
    sd["module.classifier.weight"] = torch.randn(5, D)
    report = load_weights(model, {"model": sd})
    assert report.missing == [] and report.unexpected == []
    assert set(report.dropped) == {"module.base.fc.weight", "module.base.fc.bias"}
    assert_landed(model, {"backbone." + k: v for k, v in body.items()})
    assert_landed(model, {"head.bottleneck." + k: v for k, v in bn.items()})
    assert_landed(model, {"head.classifier.weight": sd["module.classifier.weight"]})


def test_wrong_classifier_size_is_named_and_head_false_skips_it():
    model = build_model("vit_micro", num_classes=5)
    sd = {f"base.{k}": v for k, v in official_backbone(False).items()}
    sd["classifier.weight"] = torch.randn(751, D)
    with pytest.raises(CheckpointError, match=r"classifier\.weight.*\(751, 64\).*\(5, 64\)"):
        load_weights(model, sd)
    report = load_weights(model, sd, head=False)
    assert "classifier.weight" in report.dropped
    # UDA starts from a supervised model: a model without classifier drops it, with the reason
    report = load_weights(build_model("vit_micro"), sd)
    assert "num_classes=0" in report.dropped["classifier.weight"] and not report.unexpected


def test_cluster_contrast_usl_checkpoint(tmp_path):
    model = build_model("vit_micro_ics", neck_feat="after")
    body = official_backbone(True)
    bn = {"weight": torch.rand(D), "bias": torch.zeros(D), "running_mean": torch.randn(D),
          "running_var": torch.rand(D), "num_batches_tracked": torch.tensor(9)}
    sd = {**{f"module.{k}": v for k, v in body.items()}, **{f"module.bottleneck.{k}": v for k, v in bn.items()}}
    path = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": sd, "epoch": 50, "best_mAP": np.float64(0.896)}, path)
    report = load_weights(model, path)
    assert report.missing == [] and report.unexpected == []
    assert_landed(model, {"backbone." + k: v for k, v in body.items()})
    assert_landed(model, {"head.bottleneck." + k: v for k, v in bn.items()})


def test_timm_or_dino_square_pos_embed_is_resized_bilinearly():
    model = build_model("vit_micro")           # 4x2 grid
    sd = official_backbone(False, grid=(3, 3))  # a square ImageNet-style grid
    sd["head.weight"], sd["head.bias"] = torch.randn(1000, D), torch.randn(1000)  # timm classifier
    report = load_weights(model, sd)
    assert report.resized and "head.weight" in report.dropped
    pos = model.state_dict()["backbone.pos_embed"]
    assert torch.equal(pos[:, 0], sd["pos_embed"][:, 0])   # CLS slot kept
    grid = sd["pos_embed"][0, 1:].reshape(3, 3, D).permute(2, 0, 1)[None]
    ref = torch.nn.functional.interpolate(grid, size=(4, 2), mode="bilinear", align_corners=False)
    torch.testing.assert_close(pos[0, 1:], ref[0].permute(1, 2, 0).reshape(8, D))


def test_pos_embed_16x8_to_24x8_hw_ratio_rule():
    # ViT-B+ICS at 384x128 loads the 256x128 pre-training grid (transreid_ssl.md section 3)
    from reidkit.models.vit import infer_grid
    assert infer_grid(128, 24 / 8) == (16, 8)
    assert infer_grid(196, 2) == (14, 14)
    assert infer_grid(8, 2) == (4, 2)


def test_shape_mismatch_names_the_tensor_and_both_shapes():
    model = build_model("vit_micro")
    sd = official_backbone(False)
    sd["blocks.1.mlp.fc1.weight"] = torch.randn(128, D)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.mlp\.fc1\.weight.*\(128, 64\).*\(256, 64\)"):
        load_weights(model, sd)


def test_missing_and_unexpected_keys_are_errors_when_strict():
    model = build_model("vit_micro")
    sd = official_backbone(False)
    del sd["norm.weight"]
    sd["blocks.0.attn.rel_pos"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"(?s)missing.*norm\.weight.*unexpected.*rel_pos"):
        load_weights(model, sd)
    report = load_weights(model, sd, strict=False)
    assert "backbone.norm.weight" in report.missing and report.unexpected == ["blocks.0.attn.rel_pos"]
    with pytest.raises(CheckpointError, match="ICS|patch_embed"):
        load_weights(model, official_backbone(True))   # ICS weights into a patchify model


def test_loading_into_a_bare_backbone_and_our_own_state_dict():
    src = build_model("vit_micro_conv", num_classes=4)
    dst = build_model("vit_micro_conv", num_classes=4)
    report = load_weights(dst, src.state_dict())
    assert report.missing == [] and report.unexpected == []
    assert_landed(dst, src.state_dict())
    bare = build_model("vit_micro_conv").backbone
    report = load_weights(bare, src.state_dict())
    assert "head.classifier.weight" in report.dropped
    for k, v in bare.state_dict().items():
        assert torch.equal(v, src.state_dict()["backbone." + k]), k


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": _Evil()}, path)
    with pytest.raises(CheckpointError, match="contains code"):
        load_weights(build_model("vit_micro"), path)


class _Evil:
    pass


class _Shell:
    def __reduce__(self):
        import os
        return os.system, ("echo should-never-run",)


def test_unsafe_pickle_message_names_the_code_and_says_what_to_do(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": _Shell()}, path)
    with pytest.raises(CheckpointError) as info:
        load_weights(build_model("vit_micro"), path)
    msg = str(info.value)
    assert "this file contains code (posix.system); refusing; re-save the state_dict from a trusted " \
           "environment" in msg
    assert "weights_only=False" not in msg and "will likely succeed" not in msg
    assert "\n" not in msg


def test_cluster_contrast_resnet_layout():
    from reidkit.models.checkpoints import map_key
    assert map_key("module.base.0.weight")[0] == "backbone.conv1.weight"
    assert map_key("module.base.6.2.bn1.IN.weight")[0] == "backbone.layer3.2.bn1.IN.weight"
    assert map_key("module.feat_bn.running_mean")[0] == "head.bottleneck.running_mean"
    src = build_model("resnet50_ibn_a")
    sd = {k.replace("backbone.", "module.base.", 1): v for k, v in src.state_dict().items()
          if k.startswith("backbone.")}
    names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    sd = {"module.base." + names[k.split(".")[2]] + k[len("module.base." + k.split(".")[2]):]: v
          for k, v in sd.items()}
    dst = build_model("resnet50_ibn_a")
    report = load_weights(dst, sd)
    assert report.unexpected == [] and all(k.startswith("head.") for k in report.missing)
    assert torch.equal(dst.state_dict()["backbone.layer2.0.bn1.IN.weight"],
                       src.state_dict()["backbone.layer2.0.bn1.IN.weight"])
