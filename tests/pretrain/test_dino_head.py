import torch

from reidkit.models.dino_head import DINOHead


def test_head_shapes_keys_and_official_layout():
    head = DINOHead(64, out_dim=100, hidden_dim=32, bottleneck_dim=16)
    keys = set(head.state_dict())
    assert {"mlp.0.weight", "mlp.2.weight", "mlp.4.weight", "last_layer.weight_g", "last_layer.weight_v"} <= keys
    assert head.state_dict()["last_layer.weight_g"].shape == (100, 1)
    assert head.state_dict()["last_layer.weight_v"].shape == (100, 16)
    assert head(torch.randn(5, 64)).shape == (5, 100)


def test_norm_last_layer_gives_cosines_and_fixed_g():
    torch.manual_seed(0)
    head = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=6, norm_last_layer=True)
    assert not head.last_layer.weight_g.requires_grad
    x = torch.randn(4, 8)
    z = torch.nn.functional.normalize(head.mlp(x), dim=-1)
    protos = torch.nn.functional.normalize(head.last_layer.weight_v, dim=-1)
    torch.testing.assert_close(head(x), z @ protos.T)
    assert head(x).abs().max() <= 1 + 1e-6


def test_weight_norm_matches_torch_reference():
    head = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=6, norm_last_layer=False)
    ref = torch.nn.Linear(6, 10, bias=False)
    ref = torch.nn.utils.parametrizations.weight_norm(ref)
    with torch.no_grad():
        ref.parametrizations.weight.original0.copy_(head.last_layer.weight_g * 3)
        ref.parametrizations.weight.original1.copy_(head.last_layer.weight_v)
        head.last_layer.weight_g.mul_(3)
    x = torch.randn(3, 6)
    torch.testing.assert_close(head.last_layer(x), ref(x))
    assert head.last_layer.weight_g.requires_grad


def test_use_bn_layer_order():
    head = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=6, use_bn=True)
    kinds = [type(m).__name__ for m in head.mlp]
    assert kinds == ["Linear", "BatchNorm1d", "GELU", "Linear", "BatchNorm1d", "GELU", "Linear"]


def test_loads_an_official_head_state_dict_strictly():
    """The official head (nn.Sequential MLP + torch weight_norm last layer) loads with no mapping."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 16), torch.nn.GELU(),
                              torch.nn.Linear(16, 6))
    last = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(6, 10, bias=False))
    official = {f"mlp.{k}": v for k, v in mlp.state_dict().items()}
    official["last_layer.weight_g"] = last.parametrizations.weight.original0.detach()
    official["last_layer.weight_v"] = last.parametrizations.weight.original1.detach()
    head = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=6)
    head.load_state_dict(official, strict=True)
    x = torch.randn(3, 8)
    want = last(torch.nn.functional.normalize(mlp(x), dim=-1))
    torch.testing.assert_close(head(x), want)
