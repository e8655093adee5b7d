"""Numeric precision and the one place a batch goes to the device.

``precision`` is ``fp32``, ``bf16`` or ``fp16``. bf16 and fp16 run the forward pass under autocast;
fp16 also scales the loss (``GradScaler``) and needs CUDA. ``to_device`` is the single hook where
a batch moves to the accelerator: device-side augmentation and pinned non-blocking copies belong here.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn


def autocast_dtype(precision: str, device: torch.device, error: type[Exception] = ValueError) -> torch.dtype | None:
    """``fp32`` -> None (no autocast), ``bf16`` -> bfloat16, ``fp16`` -> float16 (CUDA only)."""
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type != "cuda":
        raise error("precision=fp16 needs a CUDA GPU (it relies on a gradient scaler); use precision=bf16 or "
                    "precision=fp32 on CPU")
    if precision not in ("bf16", "fp16"):
        raise error(f"precision={precision!r}: expected fp32, bf16 or fp16")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass; a no-op for fp32."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def grad_scaler(dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A loss scaler, enabled for fp16 only (a disabled one passes the loss and the step through)."""
    return torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def to_device(batch: Any, device: torch.device) -> Any:
    """A tensor, or a list / tuple of tensors, on ``device`` (non-blocking from pinned memory)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


def maybe_compile(module: nn.Module | Callable, enabled: bool) -> nn.Module | Callable:
    """``torch.compile(module)`` when the recipe says ``compile: true``; the module (or function) itself
    otherwise. Compiled code gives the same results up to float rounding, not bit for bit."""
    return torch.compile(module) if enabled else module
