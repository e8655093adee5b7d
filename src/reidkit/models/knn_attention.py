"""k-NN attention (KVT, Wang et al., arXiv 2106.00515) as a drop-in timm attention layer.

For every query, only its ``k`` largest attention logits survive; the rest are set to -inf before
the softmax, so each token attends to its k nearest keys and ignores clutter (background,
occluders). The layer has exactly the parameters of timm's ``Attention`` (``qkv``, ``proj``), so
dense checkpoints load into it unchanged and k can be switched at any time with :func:`set_knn`.

``k`` is a count (``int >= 1``) or a ratio of the sequence length (``0 < float <= 1``); ``None`` or
any k >= N means dense attention, which then runs through the fused SDPA kernel.

Cost: the selection is a threshold at the k-th largest logit of each row (unsorted ``topk``, then
its row minimum), turned into an additive 0 / -inf mask in the compute dtype; the masked softmax
and the product with V then run in ONE fused ``scaled_dot_product_attention`` call (the
memory-efficient kernel on CUDA takes the mask): no float32 softmax matrix, no separate softmax
or matmul. The float32 logits for the threshold remain, one batched matmul. On the 2-core CPU the
row-wise top-k is the largest part (about 2x the whole dense attention). ``reference_knn_attention``
keeps the plain version (masked_fill -inf, softmax, matmul) that the tests compare against:
equal outputs and gradients. ``bench/gpu_suite.py`` measures both against dense SDPA.

Ties: every key whose logit equals the k-th largest is kept (``logits >= kth``), in both paths, so
a row may keep more than k keys when logits tie exactly (measure zero for real-valued logits).

Precision: the logits and the selection run in float32 even under bf16 autocast, but q and k come
from bf16 projections, so a key at a near-tie with the k-th can still swap in or out. Measured on a
random-init ViT-S at 256x128 (129 tokens, k = 50% in every block): cosine 0.9986-0.9994 between
bf16 and fp32 features, against 0.9999 for dense attention. Use fp32 where that matters; on tiny
models with a handful of tokens a single swap moves the feature more.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
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
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def topk_keep_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(..., N) bool: True for the k largest entries of each row (and any tied with the k-th)."""
    return logits >= logits.topk(k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)


def reference_knn_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: int,
                            scale: float) -> torch.Tensor:
    """The readable version: float32 logits, -inf outside the top k, softmax, times V.

    ``q, k, v`` (B, H, N, d); returns (B, H, N, d) in ``v``'s dtype.
    """
    with torch.autocast(q.device.type, enabled=False):
        logits = (q.float() * scale) @ k.float().transpose(-2, -1)          # (B, H, N, N)
        attn = topk_mask_logits(logits, topk).softmax(dim=-1)
    return attn.to(v.dtype) @ v


def knn_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: int, scale: float,
                  dropout_p: float = 0.0) -> torch.Tensor:
    """Fast path: float32 threshold, then one fused masked SDPA. Same shapes as the reference."""
    # Logits in float32 even under bf16 autocast: which keys make the top k must not depend on
    # rounding (bf16 flips near-ties and moved features by ~1e-3 in cosine).
    with torch.no_grad(), torch.autocast(q.device.type, enabled=False):
        logits = (q.float() * scale) @ k.float().transpose(-2, -1)
        kth = logits.topk(topk, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
        # additive mask in q's dtype: SDPA would turn a bool mask into this anyway (measured faster)
        mask = torch.zeros(logits.shape, dtype=q.dtype, device=q.device).masked_fill_(logits < kth, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)


class KNNAttention(Attention):
    """timm ``Attention`` with top-k keys per query. Input and output (B, N, D)."""

    def __init__(self, dim: int, num_heads: int = 8, knn_k: int | float | None = None, **kwargs) -> None:
        super().__init__(dim, num_heads=num_heads, **kwargs)
        self.knn_k = knn_k
        self.reference = False   # True: run reference_knn_attention (tests, benchmarks)

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
        if self.reference:
            out = reference_knn_attention(q, kk, v, k, self.scale)
        else:
            out = knn_attention(q, kk, v, k, self.scale, self.attn_drop.p if self.training else 0.0)
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


__all__ = ["KNNAttention", "set_knn", "resolve_k", "topk_mask_logits", "topk_keep_mask", "knn_attention",
           "reference_knn_attention"]
