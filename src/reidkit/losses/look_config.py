"""LOOK's loss settings, torch-free, so that ``reidkit pretrain`` refuses a bad LOOK recipe before torch
is imported (the method is in ``reidkit.losses.look``)."""
from __future__ import annotations

from dataclasses import dataclass


class LOOKError(ValueError):
    """A LOOK problem that cannot train (no labels, k too large)."""


@dataclass
class LOOKLossConfig:
    k: int = 200                   # neighbours per image
    temperature: float = 0.07      # tau
    memory_momentum: float = 0.5   # mu of the per-image memory slot
