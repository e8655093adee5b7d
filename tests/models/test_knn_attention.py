"""Fused k-NN attention (threshold + one masked SDPA) against the plain reference: outputs, gradients, ties."""
import pytest
import torch

from reidkit.models import build_model
from reidkit.models.knn_attention import (KNNAttention, knn_attention, reference_knn_attention,
                                          topk_keep_mask)


def _qkv(b=2, h=3, n=17, d=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g, dtype=dtype, requires_grad=True) for _ in range(3)]


@pytest.mark.parametrize("k", [1, 4, 9, 16])
def test_fused_equals_reference_outputs_and_gradients(k):
    q, kk, v = _qkv()
    scale = 8 ** -0.5
    ref = reference_knn_attention(q, kk, v, k, scale)
    grads_ref = torch.autograd.grad((ref * torch.linspace(-1, 1, ref.numel(), dtype=ref.dtype).view_as(ref)).sum(),
                                    (q, kk, v))
    got = knn_attention(q, kk, v, k, scale)
    grads = torch.autograd.grad((got * torch.linspace(-1, 1, got.numel(), dtype=got.dtype).view_as(got)).sum(),
                                (q, kk, v))
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5)   # the reference computes in float32
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_ties_keep_every_key_equal_to_the_kth():
    # integer-valued q and k: many exactly tied logits
    g = torch.Generator().manual_seed(1)
    q = torch.randint(-1, 2, (1, 1, 12, 4), generator=g).double()
    kk = torch.randint(-1, 2, (1, 1, 12, 4), generator=g).double()
    v = torch.randn(1, 1, 12, 4, generator=g, dtype=torch.float64)
    logits = q @ kk.transpose(-2, -1)
    keep = topk_keep_mask(logits, 3)
    kth = logits.sort(dim=-1, descending=True).values[..., 2:3]
    assert torch.equal(keep, logits >= kth)                       # documented policy: ties kept
    assert bool((keep.sum(-1) > 3).any())                         # and the case occurs here
    torch.testing.assert_close(knn_attention(q, kk, v, 3, 1.0), reference_knn_attention(q, kk, v, 3, 1.0))


def test_module_fast_and_reference_paths_agree_in_a_model():
    torch.manual_seed(0)
    model = build_model("vit_micro", knn_k=0.5).train()
    x = torch.randn(2, 3, 64, 32)
    outs, grads = [], []
    for reference in (True, False):
        for m in model.modules():
            if isinstance(m, KNNAttention):
                m.reference = reference
        model.zero_grad()
        out = model(x)
        feat = out[1] if isinstance(out, tuple) else out
        feat.pow(2).sum().backward()
        outs.append(feat.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-3)


def test_bf16_autocast_selects_from_float32_logits():
    q, kk, v = (t.detach().float() for t in _qkv(n=33, d=16, seed=3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = knn_attention(q.bfloat16(), kk.bfloat16(), v.bfloat16(), 16, 0.25)
    ref = reference_knn_attention(q.bfloat16().float(), kk.bfloat16().float(), v.bfloat16().float(), 16, 0.25)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), ref, atol=3e-2, rtol=3e-2)
