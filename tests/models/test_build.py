"""Model building, shapes, parameter counts against the spec, save/load round trip."""
import pytest
import torch

from reidkit.models import ModelConfigError, ModelFileError, ReIDModel, build_model, load_model, save_model


def backbone_params(model):
    return sum(p.numel() for p in model.backbone.parameters())


@pytest.mark.parametrize("preset,expected", [
    ("vit_small", 21_639_552),          # transreid_ssl.md section 2.3
    ("vit_small_ics", 23_001_024),
    ("vit_base", 85_746_432),
    ("vit_base_ics", 88_385_856),
    ("vit_base_ics_384", 88_435_008),
])
def test_param_counts_equal_the_spec(preset, expected):
    with torch.device("meta"):
        model = build_model(preset)
    assert backbone_params(model) == expected


@pytest.mark.parametrize("stem", ["patchify", "conv", "ics"])
def test_train_and_eval_outputs(stem):
    torch.manual_seed(0)
    model = build_model("vit_micro", num_classes=7, stem=stem)
    x = torch.randn(3, 3, 64, 32)
    model.train()
    logits, feat = model(x)
    assert logits.shape == (3, 7) and feat.shape == (3, 64)
    model.eval()
    with torch.no_grad():
        before = model(x)
        tokens = model.backbone.forward_features(x)
    assert before.shape == (3, 64)
    # the 'before' test feature is the CLS token after the final LayerNorm
    torch.testing.assert_close(before, tokens[:, 0])
    assert tokens.shape == (3, 1 + 4 * 2, 64)


@pytest.mark.parametrize("stem", ["patchify", "conv", "ics"])
def test_forward_features_any_multiple_of_the_patch(stem):
    model = build_model("vit_micro", stem=stem).eval()
    with torch.no_grad():
        for h, w in [(32, 16), (64, 32), (96, 48), (128, 64)]:
            out = model.backbone.forward_features(torch.randn(2, 3, h, w))
            assert out.shape == (2, 1 + (h // 16) * (w // 16), 64)


def test_input_that_does_not_fit_the_stem_is_a_clear_error():
    model = build_model("vit_micro").eval()
    with pytest.raises(ValueError, match="does not fit the stem"):
        model(torch.randn(1, 3, 60, 32))


def test_neck_feat_after_returns_the_bn_feature():
    model = build_model("vit_micro", neck_feat="after").eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        feat = model.global_feature(x)
        ref = model.head.bottleneck(feat)
        torch.testing.assert_close(model(x), ref)


def test_unknown_preset_and_override_are_named():
    with pytest.raises(ModelConfigError, match="vit_nope"):
        build_model("vit_nope")
    with pytest.raises(ModelConfigError, match="colour"):
        build_model("vit_micro", colour="red")


@pytest.mark.parametrize("preset,overrides", [
    ("vit_micro_ics", dict(num_classes=5)),
    ("vit_micro", dict(num_classes=0, stride=12, img_size=(76, 40), sie_cameras=3, pool="gem", neck_feat="after")),
])
def test_save_load_round_trip(tmp_path, preset, overrides):
    torch.manual_seed(1)
    model = build_model(preset, **overrides)
    model.train()
    h, w = model.spec.img_size
    model(torch.randn(4, 3, h, w), camids=torch.tensor([0, 1, 2, 0]))  # move BN running stats
    model.eval()
    path = save_model(model, tmp_path / "m.safetensors")
    again = load_model(path)
    assert isinstance(again, ReIDModel) and again.config == model.config
    x = torch.randn(2, 3, h, w)
    cams = torch.tensor([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(again(x, cams), model(x, cams), rtol=0, atol=0)


def test_load_model_rejects_foreign_files(tmp_path):
    from safetensors.torch import save_file
    p = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(1)}, str(p))
    with pytest.raises(ModelFileError, match="plain.safetensors"):
        load_model(p)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_backward_with_grad_checkpointing_and_frozen_bn_bias():
    torch.manual_seed(0)
    model = build_model("vit_micro_ics", num_classes=3, drop_path_rate=0.1)
    model.backbone.set_grad_checkpointing(True)
    model.train()
    logits, feat = model(torch.randn(4, 3, 64, 32))
    (logits.logsumexp(1).mean() + feat.pow(2).mean()).backward()
    assert model.head.bottleneck.bias.grad is None
    assert model.backbone.patch_embed.conv[0].weight.grad is not None
    assert model.backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
