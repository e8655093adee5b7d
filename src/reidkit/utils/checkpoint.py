"""Training-state checkpoints for resuming a killed run exactly where it was.

A training state is a dict of model / optimizer / scheduler state dicts, counters and RNG
states. It is written atomically with ``torch.save`` and read back with
``torch.load(weights_only=True)``, so a checkpoint file can never execute code. Each state carries
a SHA-256 digest of its contents (``"checksum"``), verified on load: a corrupted file is refused
with a named error instead of training on flipped bits. Final *models* are published separately
as safetensors (``reidkit.models``).
"""
from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidkit.utils.io import atomic_write

CHECKSUM_KEY = "checksum"


class CheckpointError(ValueError):
    """A checkpoint or model file that is missing, unreadable, corrupt or does not fit the run."""


class NonFiniteLossError(RuntimeError):
    """Raised when a loss becomes NaN or inf; the last good checkpoint is kept."""


def state_digest(state: Any) -> str:
    """SHA-256 over a nested state (dict keys in order, tensors as dtype + shape + bytes, scalars by repr)."""
    h = hashlib.sha256()

    def walk(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            t = v.detach().to("cpu").contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(v, dict):
            h.update(f"D{len(v)}".encode())
            for k, x in v.items():
                h.update(repr(k).encode())
                walk(x)
        elif isinstance(v, (list, tuple)):
            h.update(f"{type(v).__name__[0]}{len(v)}".encode())
            for x in v:
                walk(x)
        else:
            h.update(repr(v).encode())

    walk(state)
    return h.hexdigest()


def _nbytes(v: Any) -> int:
    if isinstance(v, torch.Tensor):
        return v.numel() * v.element_size()
    if isinstance(v, dict):
        return sum(_nbytes(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return sum(_nbytes(x) for x in v)
    return 0


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write a training state with its checksum (a killed write leaves the previous file
    intact; a full disk raises ``reidkit.utils.io.DiskFullError``)."""
    body = {k: v for k, v in state.items() if k != CHECKSUM_KEY}
    full = {**body, CHECKSUM_KEY: state_digest(body)}
    return atomic_write(path, lambda tmp: torch.save(full, tmp), size=_nbytes(body) + (1 << 20))


_BLOCKED_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")


def unsafe_load_message(path: str | Path, exc: BaseException) -> str:
    """One plain sentence for a file that ``torch.load(weights_only=True)`` refused.

    A pickle that names a callable (``posix.system``, ``builtins.eval``, a class) carries code:
    say which and refuse, without torch's hint to retry with ``weights_only=False``. Anything
    else (not a zip, truncated) is reported with torch's own last line.
    """
    text = str(exc)
    found = _BLOCKED_GLOBAL.search(text)
    if found:
        return (f"{path}: this file contains code ({found.group(1)}); refusing; re-save the state_dict "
                "from a trusted environment (torch.save(model.state_dict()) or safetensors)")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln]
    reason = lines[-1] if lines else type(exc).__name__
    return f"{path}: not a readable PyTorch checkpoint ({reason})"


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training state safely and verify its checksum (states written before checksums load as they are)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        if _BLOCKED_GLOBAL.search(str(e)):  # a pickle that carries code: say so plainly
            raise CheckpointError(unsafe_load_message(path, e)) from None
        raise CheckpointError(f"{path}: cannot read checkpoint safely ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); the file is damaged or not a "
                              "reidkit training state") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(state).__name__}")
    want = state.pop(CHECKSUM_KEY, None)
    if want is not None and state_digest(state) != want:
        raise CheckpointError(f"{path}: checksum mismatch, the file is corrupt (changed since it was written); "
                              "restore it from a backup or start the run again")
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
