"""Stems: the layers that turn an image (B, 3, H, W) into a grid of tokens (B, gh, gw, D).

Every stem has the same constructor (the keyword arguments timm's ``VisionTransformer`` passes to
its ``embed_layer``) and the same output layout, channels last, so the ViT can resize its position
embeddings to whatever grid an input produces.
"""
from __future__ import annotations

from reidkit.models.stems.conv import ConvStem
from reidkit.models.stems.ics import IBN, ICSStem
from reidkit.models.stems.patchify import PatchifyStem

STEMS = {"patchify": PatchifyStem, "conv": ConvStem, "ics": ICSStem}

__all__ = ["STEMS", "PatchifyStem", "ConvStem", "ICSStem", "IBN"]
