import pytest
import torch

from reidkit.models import build_model
from reidkit.models.temporal import (TemporalPool, VideoReIDModel, build_video_model, load_video_model,
                                     save_video_model)


def test_avg_and_max_with_mask_match_hand_computation():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    avg = TemporalPool("avg")(x, mask)
    assert torch.allclose(avg[0], x[0, :2].mean(0)) and torch.allclose(avg[1], x[1].mean(0))
    mx = TemporalPool("max")(x, mask)
    assert torch.equal(mx[0], x[0, :2].max(0).values) and torch.equal(mx[1], x[1].max(0).values)
    with pytest.raises(ValueError, match="at least one valid frame"):
        TemporalPool("avg")(x, torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown temporal pooling"):
        TemporalPool("median")


def test_attention_starts_as_average_and_learns_weights():
    torch.manual_seed(0)
    pool = TemporalPool("attention", dim=16)
    x = torch.randn(3, 6, 16)
    assert torch.allclose(pool(x), x.mean(1), atol=1e-6)
    torch.nn.init.normal_(pool.score[2].weight)
    out = pool(x)
    s = pool.score(x).squeeze(2)
    w = torch.softmax(s, 1)
    assert torch.allclose(out, (w[:, :, None] * x).sum(1), atol=1e-5)
    # masked frames get no weight: pooling a padded clip equals pooling the real frames alone
    mask = torch.tensor([[True] * 4 + [False] * 2] * 3)
    assert torch.allclose(pool(x, mask), pool(x[:, :4]), atol=1e-6)


@pytest.mark.parametrize("pool", ["avg", "max", "attention"])
def test_one_frame_clip_is_the_frame_model(pool):
    torch.manual_seed(0)
    frame = build_model("vit_micro", num_classes=5, neck_feat="after")
    video = VideoReIDModel(frame, pool).eval()
    x = torch.randn(2, 3, 64, 32)
    assert torch.allclose(video(x), frame.eval()(x), atol=1e-5)
    assert torch.allclose(video(x.unsqueeze(1)), frame(x), atol=1e-5)


def test_clip_forward_shapes_and_average_pooling():
    torch.manual_seed(0)
    video = build_video_model("vit_micro", num_classes=7, pool="avg")
    clips = torch.randn(2, 3, 3, 64, 32)
    logits, feat = video.train()(clips)
    assert logits.shape == (2, 7) and feat.shape == (2, video.feat_dim)
    video.eval()
    per_frame = video.frame_model.eval()(clips.flatten(0, 1)).view(2, 3, -1)  # neck 'before': pre-BN
    assert torch.allclose(video(clips), per_frame.mean(1), atol=1e-5)
    with pytest.raises(ValueError, match="clips"):
        video(torch.randn(3, 64, 32))


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    video = build_video_model("vit_micro", num_classes=3, pool="attention")
    torch.nn.init.normal_(video.temporal.score[2].weight)
    save_video_model(video, tmp_path / "v.safetensors")
    back = load_video_model(tmp_path / "v.safetensors")
    clips = torch.randn(2, 4, 3, 64, 32)
    assert back.config == video.config
    assert torch.allclose(back(clips), video.eval()(clips))
    from reidkit.models import save_model
    from reidkit.models.model_file import ModelFileError
    save_model(build_model("vit_micro"), tmp_path / "img.safetensors")
    with pytest.raises(ModelFileError, match="not a reidkit video model"):
        load_video_model(tmp_path / "img.safetensors")
