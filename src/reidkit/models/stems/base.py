"""What all stems share: grid bookkeeping and the input-size check."""
from __future__ import annotations

import torch
from torch import nn


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class StemBase(nn.Module):
    """Grid bookkeeping for a stem whose tokens sit every ``stride`` pixels.

    A stem maps (B, 3, H, W) to (B, gh, gw, D) with ``gh = (H - patch) // stride + 1`` (the same
    for the width). ``img_size`` is the size the position embeddings were made for; other sizes
    work too, as long as the convolution geometry fits (checked in :meth:`check_input`).
    """

    def __init__(self, img_size, patch_size, stride, embed_dim: int) -> None:
        super().__init__()
        self.img_size = _pair(img_size)
        self.patch_size = _pair(patch_size)
        self.stride = _pair(stride)
        self.embed_dim = embed_dim
        self.grid_size = self.dynamic_feat_size(self.img_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        if min(self.grid_size) < 1:
            raise ValueError(f"image size {self.img_size} is smaller than the patch {self.patch_size}")

    def dynamic_feat_size(self, img_size) -> tuple[int, int]:
        (h, w), (ph, pw), (sh, sw) = img_size, self.patch_size, self.stride
        return (h - ph) // sh + 1, (w - pw) // sw + 1

    def feat_ratio(self, as_scalar: bool = True):
        return max(self.stride) if as_scalar else self.stride

    def check_input(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        (ph, pw), (sh, sw) = self.patch_size, self.stride
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        # Non-overlapping patches must tile the image exactly (silently dropping pixels hides bugs);
        # overlapping strides floor the grid as TransReID does (stride 12 at 256x128 gives 21x10).
        exact = (sh, sw) == (ph, pw)
        if h < ph or w < pw or (exact and (h % ph or w % pw)):
            raise ValueError(f"input {h}x{w} does not fit the stem: need at least {ph}x{pw}"
                             + (f" and multiples of the patch size {ph}x{pw}" if exact else ""))
