"""k-NN attention, SIE, BNNeck, IBN, stems, drop-path: each checked against a reference written here."""
import pytest
import torch
import torch.nn.functional as F
from timm.layers import Attention

from reidkit.models import build_model
from reidkit.models.heads import BNNeck, GeM
from reidkit.models.knn_attention import KNNAttention, resolve_k
from reidkit.models.stems import IBN, PatchifyStem


def make_attn(dim=32, heads=4, k=None, seed=0):
    torch.manual_seed(seed)
    dense = Attention(dim, num_heads=heads, qkv_bias=True).eval()
    knn = KNNAttention(dim, num_heads=heads, qkv_bias=True, knn_k=k).eval()
    knn.load_state_dict(dense.state_dict())
    return dense, knn


def brute_knn(attn, x, k):
    """Loop over batch, head and query: softmax over the query's k largest logits only."""
    B, N, D = x.shape
    H, hd = attn.num_heads, D // attn.num_heads
    qkv = attn.qkv(x).reshape(B, N, 3, H, hd)
    out = torch.zeros(B, N, H, hd, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            q, kk, v = (qkv[b, :, j, h].double() for j in range(3))
            for i in range(N):
                logits = (kk @ q[i]) / hd ** 0.5
                top = logits.topk(k).indices
                w = torch.softmax(logits[top], dim=0)
                out[b, i, h] = (w[:, None] * v[top]).sum(0)
    return attn.proj(out.reshape(B, N, D).float())


def test_knn_with_all_tokens_equals_dense_attention():
    x = torch.randn(2, 9, 32)
    dense, knn = make_attn(k=9)
    with torch.no_grad():
        torch.testing.assert_close(knn(x), dense(x), atol=1e-6, rtol=1e-5)
        knn.knn_k = 1.0
        torch.testing.assert_close(knn(x), dense(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_knn_matches_a_brute_force_reference(k):
    x = torch.randn(2, 9, 32)
    _, knn = make_attn(k=k)
    with torch.no_grad():
        torch.testing.assert_close(knn(x), brute_knn(knn, x, k), atol=1e-5, rtol=1e-4)


def test_knn_k_as_ratio_and_bad_values():
    assert resolve_k(0.5, 129) == 64 or resolve_k(0.5, 129) == 65
    assert resolve_k(1.0, 129) is None and resolve_k(129, 129) is None and resolve_k(None, 5) is None
    assert resolve_k(100, 129) == 100
    for bad in (0, -1, 0.0, 2.5, "8"):
        with pytest.raises(ValueError):
            resolve_k(bad, 10)


def test_knn_gradients_flow_only_through_kept_keys():
    _, knn = make_attn(k=2)
    x = torch.randn(1, 6, 32, requires_grad=True)
    knn(x)[0, 0].sum().backward()
    assert torch.isfinite(x.grad).all()


def test_knn_only_in_the_last_blocks():
    model = build_model("vit_micro", depth=4, knn_k=3, knn_last_n=2)
    assert [b.attn.knn_k for b in model.backbone.blocks] == [None, None, 3, 3]
    dense = build_model("vit_micro", depth=4)
    dense.load_state_dict(model.state_dict())
    model.eval(), dense.eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert not torch.allclose(model(x), dense(x))
        for b in model.backbone.blocks:
            b.attn.knn_k = 9 if b.attn.knn_k else None  # k = all 9 tokens
        torch.testing.assert_close(model(x), dense(x), atol=1e-5, rtol=1e-4)


def test_sie_adds_the_camera_embedding_to_every_token():
    torch.manual_seed(0)
    sie = build_model("vit_micro", sie_cameras=3).eval()
    plain = build_model("vit_micro").eval()
    plain.load_state_dict({k: v for k, v in sie.state_dict().items() if "sie_embed" not in k})
    x = torch.randn(2, 3, 64, 32)
    cams = torch.tensor([2, 2])
    with torch.no_grad():
        # adding coef * e_c to every token == adding it to every row of pos_embed
        plain.backbone.pos_embed += 3.0 * sie.backbone.sie_embed[2]
        torch.testing.assert_close(sie(x, cams), plain(x), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(sie(x, torch.tensor([0, 1])), sie(x, cams))
    with pytest.raises(ValueError, match="camids"):
        sie(x)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        sie(x, torch.tensor([0, 3]))


def test_runtime_pos_embed_resize_for_small_crops():
    model = build_model("vit_micro").eval()     # 64x32 -> 4x2 grid; a 32x16 crop -> 2x1
    vit = model.backbone
    x = torch.randn(1, 3, 32, 16)
    with torch.no_grad():
        out = vit.forward_features(x)
        grid = vit.pos_embed[0, 1:].reshape(4, 2, -1).permute(2, 0, 1)[None]
        small = F.interpolate(grid, size=(2, 1), mode="bicubic", align_corners=False)
        tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2) + small.flatten(2).transpose(1, 2)
        cls = vit.cls_token + vit.pos_embed[:, :1]
        ref = vit.norm(vit.blocks(torch.cat([cls, tokens], dim=1)))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_overlapping_patch_stride_grid():
    stem = PatchifyStem(img_size=(256, 128), patch_size=16, embed_dim=8, stride=12)
    assert stem.grid_size == (21, 10)   # TransReID's 210 patches at stride 12
    with torch.no_grad():
        assert stem(torch.randn(1, 3, 256, 128)).shape == (1, 21, 10, 8)
    model = build_model("vit_micro", stride=8)
    assert model.backbone.pos_embed.shape == (1, 1 + 7 * 3, 64)
    with pytest.raises(ValueError, match="stride"):
        build_model("vit_micro_ics", stride=8)


def test_drop_path_rises_linearly():
    model = build_model("vit_micro", depth=5, drop_path_rate=0.1)
    probs = [b.drop_path1.drop_prob for b in model.backbone.blocks[1:]]
    torch.testing.assert_close(torch.tensor(probs), torch.tensor([0.025, 0.05, 0.075, 0.1]))


def test_bnneck_bias_frozen_classifier_bias_free_and_init():
    torch.manual_seed(0)
    neck = BNNeck(256, num_classes=751)
    assert not neck.bottleneck.bias.requires_grad and neck.bottleneck.weight.requires_grad
    assert torch.equal(neck.bottleneck.bias, torch.zeros(256))
    assert neck.classifier.bias is None
    assert abs(neck.classifier.weight.std().item() - 0.001) < 1e-4
    feat = torch.randn(8, 256) * 3 + 1
    bn, logits = neck.train()(feat)
    ref = (feat - feat.mean(0)) / torch.sqrt(feat.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(bn, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, ref @ neck.classifier.weight.T, atol=1e-4, rtol=1e-4)
    assert BNNeck(16).classifier is None


def test_gem_and_avg_pooling():
    tokens = torch.rand(2, 5, 4) + 0.1
    torch.testing.assert_close(GeM(3.0)(tokens), (tokens ** 3).mean(1) ** (1 / 3))
    model = build_model("vit_micro", pool="avg").eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.backbone.forward_features(x)[:, 1:].mean(1))


def test_ibn_is_instance_norm_on_the_first_half():
    ibn = IBN(8).train()
    x = torch.randn(3, 8, 5, 4) * 2 + 1
    y = ibn(x)
    a = x[:, :4]
    ref_in = (a - a.mean((2, 3), keepdim=True)) / torch.sqrt(a.var((2, 3), unbiased=False, keepdim=True) + 1e-5)
    b = x[:, 4:]
    ref_bn = (b - b.mean((0, 2, 3), keepdim=True)) / torch.sqrt(b.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(y[:, :4], ref_in, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(y[:, 4:], ref_bn, atol=1e-4, rtol=1e-4)


def test_ics_stem_structure_matches_the_official_table():
    stem = build_model("vit_micro_ics").backbone.patch_embed
    c = stem.conv
    assert [type(m).__name__ for m in c] == ["Conv2d", "IBN", "ReLU", "Conv2d", "IBN", "ReLU",
                                             "Conv2d", "BatchNorm2d", "ReLU"]
    assert (c[0].kernel_size, c[0].stride, c[0].padding, c[0].bias) == ((7, 7), (2, 2), (3, 3), None)
    assert (c[3].kernel_size, c[6].kernel_size, c[3].bias, c[6].bias) == ((3, 3), (3, 3), None, None)
    assert (stem.proj.kernel_size, stem.proj.stride) == ((8, 8), (8, 8)) and stem.proj.bias is not None
    assert c[1].IN.num_features == 32 and c[1].BN.num_features == 32 and c[1].IN.affine


def test_resnet_last_stride_one():
    model = build_model("resnet50").eval()
    with torch.no_grad():
        fmap = model.backbone.forward_features(torch.randn(1, 3, 64, 32))
    assert fmap.shape == (1, 2048, 4, 2)   # stride 16, not 32
    ibn = build_model("resnet50_ibn_a")
    names = [k for k in ibn.state_dict() if ".IN." in k]
    assert any(k.startswith("backbone.layer3.5.bn1.IN") for k in names)
    assert not any(k.startswith("backbone.layer4") for k in names)
