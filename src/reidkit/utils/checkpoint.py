"""Training-state checkpoints for resuming a killed run exactly where it was.

A training state is a dict of model / optimizer / scheduler state dicts, counters and RNG
states. It is written atomically with ``torch.save`` and read back with
``torch.load(weights_only=True)``, so a checkpoint file can never execute code.
Final *models* are published separately as safetensors (``reidkit.models``).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidkit.utils.io import atomic_write


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the run."""


class NonFiniteLossError(RuntimeError):
    """Raised when a loss becomes NaN or inf; the last good checkpoint is kept."""


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write a training state (a killed write leaves the previous file intact)."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read checkpoint safely ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(state).__name__}")
    return state


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in a form ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
        "python_version": random.getstate()[0],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((state["python_version"], tuple(int(x) for x in py[:-1]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_finite(loss: torch.Tensor, where: str) -> None:
    """Stop with a clear message when a loss is NaN or inf (``where`` says epoch/iteration)."""
    if not torch.isfinite(loss).all():
        raise NonFiniteLossError(
            f"loss became {loss.detach().float().cpu().tolist()} at {where}; stopping. The last good "
            "checkpoint is kept: lower the learning rate, enable gradient clipping, or use bf16 instead of fp16.")
