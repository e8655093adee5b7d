"""The ReID vision transformer, built on timm's ``VisionTransformer`` (not a copy beside it).

timm supplies the blocks, the final norm, drop-path and weight init; we plug in through its hooks:

* ``embed_layer``: a stem from ``stems/`` (patchify with optional overlapping stride, conv, ICS),
  all emitting a (B, gh, gw, D) token grid;
* ``attn_layer``: :class:`~reidkit.models.knn_attention.KNNAttention` (dense unless k is set);

and override only ``forward_features`` / ``_pos_embed`` to add what ReID needs: position embeddings
resized to any input grid (DINO's 128x64 local crops, 384x128 fine-tuning) and the optional SIE
camera embedding of TransReID (``x + pos + sie_coef * sie_embed[camid]``).

Keys equal timm's and the official TransReID-SSL backbone's (``cls_token``, ``pos_embed``,
``patch_embed.*``, ``blocks.i.*``, ``norm.*``; SIE adds ``sie_embed``).
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models import VisionTransformer, checkpoint_seq
from torch import nn

from reidkit.models.knn_attention import KNNAttention, set_knn
from reidkit.models.stems import STEMS


def resize_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int],
                     num_prefix: int = 1, mode: str = "bilinear") -> torch.Tensor:
    """Resize (1, P + gh*gw, D) position embeddings to a new grid, keeping the P prefix (CLS) slots.

    The grid tokens are laid out row-major (gh rows of gw) as the stems flatten them.
    ``mode='bilinear'`` (align_corners=False) is the official TransReID-SSL rule at load time;
    the runtime resize for other input sizes uses bicubic, as DINO does for its local crops.
    """
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if old_grid == new_grid:
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    d = grid.shape[-1]
    if grid.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(f"pos_embed has {grid.shape[1]} grid tokens, not {old_grid[0]}x{old_grid[1]}")
    grid = grid.reshape(1, old_grid[0], old_grid[1], d).permute(0, 3, 1, 2)
    dtype = grid.dtype
    grid = F.interpolate(grid.float(), size=new_grid, mode=mode, align_corners=False).to(dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], d)
    return torch.cat([prefix, grid], dim=1)


def infer_grid(num_tokens: int, prefer_ratio: float | None = None) -> tuple[int, int]:
    """The (gh, gw) grid of ``num_tokens`` pre-training tokens, by TransReID's hw_ratio rule.

    ``gh = int(sqrt(N * r)); gw = gh // r`` for the first ratio r that reproduces N exactly, trying
    the model's own aspect ratio first, then person-shaped 2:1 (16x8 at 256x128), square, 3:1, 4:1.
    """
    for r in dict.fromkeys(int(r) for r in (prefer_ratio, 2, 1, 3, 4) if r and r >= 1):
        gh = math.isqrt(num_tokens * r)
        gw = gh // r
        if gh * gw == num_tokens:
            return gh, gw
    raise ValueError(f"cannot infer the grid of {num_tokens} position tokens; pass src_grid=(gh, gw)")


class ReIDViT(VisionTransformer):
    """A timm ViT with ReID stems, k-NN attention, pos-embed resizing and optional SIE.

    ``forward_features(x (B, 3, H, W), camids (B,) int64 | None) -> (B, 1 + gh*gw, D)``, the
    tokens after the final LayerNorm, CLS first. Any H, W that fit the stem are accepted.
    """

    def __init__(self, img_size=(256, 128), patch_size: int = 16, stride: int | None = None,
                 stem: str = "patchify", embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 mlp_ratio: float = 4.0, drop_path_rate: float = 0.0, knn_k: int | float | None = None,
                 knn_last_n: int | None = None, sie_cameras: int = 0, sie_coef: float = 3.0,
                 **timm_kwargs) -> None:
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose from {sorted(STEMS)}")
        embed_layer = STEMS[stem]
        if stem == "patchify" and stride is not None:
            embed_layer = partial(embed_layer, stride=stride)
        elif stride not in (None, patch_size):
            raise ValueError(f"the {stem} stem fixes its stride to the patch size; got stride {stride}")
        super().__init__(
            img_size=tuple(img_size), patch_size=patch_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, num_classes=0,
            global_pool="token", drop_path_rate=drop_path_rate, embed_layer=embed_layer,
            attn_layer=KNNAttention, norm_layer=partial(nn.LayerNorm, eps=1e-6), **timm_kwargs)
        set_knn(self.blocks, knn_k, knn_last_n)
        self.sie_coef = sie_coef
        self.sie_embed = None
        if sie_cameras > 0:
            self.sie_embed = nn.Parameter(torch.zeros(sie_cameras, 1, embed_dim))
            trunc_normal_(self.sie_embed, std=0.02)

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.patch_embed.grid_size

    def _pos_embed(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, gh, gw, D) grid -> (B, 1 + gh*gw, D) with CLS prepended and embeddings added."""
        B, gh, gw, D = x.shape
        pos = self.pos_embed
        if (gh, gw) != tuple(self.patch_embed.grid_size):
            pos = resize_pos_embed(pos, self.patch_embed.grid_size, (gh, gw), mode="bicubic")
        x = torch.cat([self.cls_token.expand(B, -1, -1), x.reshape(B, gh * gw, D)], dim=1) + pos
        if self.sie_embed is not None:
            if camids is None:
                raise ValueError("this model uses the SIE camera embedding: pass camids to forward")
            camids = torch.as_tensor(camids, device=x.device).long()
            if (camids < 0).any() or (camids >= self.sie_embed.shape[0]).any():
                raise ValueError(f"camids must be in [0, {self.sie_embed.shape[0]}) for SIE, "
                                 f"got {camids.min().item()}..{camids.max().item()}")
            x = x + self.sie_coef * self.sie_embed[camids]
        return self.pos_drop(x)

    def forward_features(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        x = self._pos_embed(self.patch_embed(x), camids)
        x = self.norm_pre(self.patch_drop(x))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """The CLS feature (B, D) after the final norm."""
        return self.forward_features(x, camids)[:, 0]

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"sie_embed"}
