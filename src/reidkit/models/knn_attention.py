"""k-NN attention (KVT, Wang et al., arXiv 2106.00515) as a drop-in timm attention layer.

For every query, only its ``k`` largest attention logits survive; the rest are set to -inf before
the softmax, so each token attends to its k nearest keys and ignores clutter (background,
occluders). The layer has exactly the parameters of timm's ``Attention`` (``qkv``, ``proj``), so
dense checkpoints load into it unchanged and k can be switched at any time with :func:`set_knn`.

``k`` is a count (``int >= 1``) or a ratio of the sequence length (``0 < float <= 1``); ``None`` or
any k >= N means dense attention, which then runs through the fused SDPA kernel.

Cost: the mask is a threshold at the k-th largest logit of each row (``topk(k).values[..., -1:]``)
followed by ``masked_fill``, not the reference code's dense scatter of a B x H x N x N float mask.
Ties at the threshold keep all tied keys (measure zero for real-valued logits). The FLOPs are those
of dense attention plus a row-wise top-k, but the N x N logits must be materialised, so the fused
(flash / memory-efficient) SDPA kernels cannot be used: expect the attention part to cost about what
timm's non-fused path costs, plus the top-k. ``bench/extract_speed.py`` measures it.

Precision: the logits and the selection run in float32 even under bf16 autocast, but q and k come
from bf16 projections, so a key at a near-tie with the k-th can still swap in or out. Measured on a
random-init ViT-S at 256x128 (129 tokens, k = 50% in every block): cosine 0.9986-0.9994 between
bf16 and fp32 features, against 0.9999 for dense attention. Use fp32 where that matters; on tiny
models with a handful of tokens a single swap moves the feature more.
"""
from __future__ import annotations

import torch
from timm.layers import Attention
from torch import nn


def resolve_k(k: int | float | None, n: int) -> int | None:
    """The number of keys kept out of ``n``; ``None`` when attention stays dense."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise ValueError(f"knn_k must be a count (int) or a ratio (float in (0, 1]), got {k!r}")
    if isinstance(k, float) and k <= 1.0:
        if k <= 0.0:
            raise ValueError(f"knn_k as a ratio must be in (0, 1], got {k}")
        kk = max(1, int(round(k * n)))
    else:
        if k < 1 or not float(k).is_integer():
            raise ValueError(f"knn_k as a count must be a whole number >= 1, got {k}")
        kk = int(k)
    return None if kk >= n else kk


def topk_mask_logits(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest entries of each row of ``logits`` (..., N); the others become -inf."""
    kth = logits.topk(k, dim=-1).values[..., -1:]   # sorted top-k measured faster than kthvalue/sort
    return logits.masked_fill(logits < kth, float("-inf"))


class KNNAttention(Attention):
    """timm ``Attention`` with top-k keys per query. Input and output (B, N, D)."""

    def __init__(self, dim: int, num_heads: int = 8, knn_k: int | float | None = None, **kwargs) -> None:
        super().__init__(dim, num_heads=num_heads, **kwargs)
        self.knn_k = knn_k

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        B, N, _ = x.shape
        k = resolve_k(self.knn_k, N)
        if k is None:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        if attn_mask is not None or is_causal:
            raise ValueError("k-NN attention does not combine with an attention mask")
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, kk, v = qkv.unbind(0)
        q, kk = self.q_norm(q), self.k_norm(kk)
        # Logits in float32 even under bf16 autocast: which keys make the top k must not depend
        # on rounding (bf16 flips near-ties and moved features by ~1e-3 in cosine).
        with torch.autocast(x.device.type, enabled=False):
            logits = (q.float() * self.scale) @ kk.float().transpose(-2, -1)   # (B, H, N, N)
            attn = topk_mask_logits(logits, k).softmax(dim=-1)
        out = self.attn_drop(attn).to(v.dtype) @ v                           # (B, H, N, head_dim)
        out = self.norm(out.transpose(1, 2).reshape(B, N, self.attn_dim))
        return self.proj_drop(self.proj(out))


def set_knn(blocks: nn.Sequential, knn_k: int | float | None, last_n: int | None = None) -> None:
    """Use top-``knn_k`` attention in the last ``last_n`` blocks (all when ``None``), dense elsewhere."""
    depth = len(blocks)
    first = 0 if last_n is None else max(0, depth - int(last_n))
    for i, blk in enumerate(blocks):
        if not isinstance(blk.attn, KNNAttention):
            raise TypeError("set_knn needs blocks built with KNNAttention")
        blk.attn.knn_k = knn_k if i >= first else None


__all__ = ["KNNAttention", "set_knn", "resolve_k", "topk_mask_logits"]
