"""Atomic file writes and safe tensor files.

A run killed at any moment must leave either the old file or the new one, never half of one:
every write goes to a temporary file in the same folder, is flushed to disk, then renamed.
Tensors are stored as safetensors (no pickle); small metadata as JSON.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


class DiskFullError(OSError):
    """The disk filled up during a write; the previous file at the path is intact."""

    def __init__(self, path: str | Path, needed: int | None = None):
        free = shutil.disk_usage(Path(path).parent).free if Path(path).parent.exists() else 0
        want = f", {human_bytes(needed)} needed" if needed is not None else ""
        super().__init__(errno.ENOSPC, f"no space left on device: {path} ({human_bytes(free)} free{want})")
        self.path, self.free, self.needed = Path(path), free, needed

    def __str__(self) -> str:
        return self.strerror


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def atomic_write(path: str | Path, write: Callable[[str], None], size: int | None = None) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``. A full disk raises
    ``DiskFullError`` (``size``: the bytes the write needed, when known) and leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if not isinstance(e, DiskFullError) and _disk_full(e, path, size):
            raise DiskFullError(path, size) from None
        raise
    return path


def _disk_full(e: BaseException, path: Path, size: int | None) -> bool:
    """Did ``e`` come from a full disk? torch and safetensors wrap ENOSPC in their own errors, so a
    failed write of ``size`` bytes where less than that is free counts too."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return True
    if isinstance(e, Exception) and ("No space left" in str(e) or "StorageFull" in str(e)):
        return True
    return size is not None and isinstance(e, Exception) and shutil.disk_usage(path.parent).free < size


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files a killed ``atomic_write`` left in ``folder``; returns them."""
    folder = Path(folder)
    stale = sorted(p for p in folder.glob(".*.tmp") if p.is_file()) if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), size=len(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_tensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    """Atomically write a dict of tensors as safetensors (tensors made contiguous, on CPU)."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    size = sum(v.numel() * v.element_size() for v in flat.values())
    return atomic_write(path, lambda tmp: save_file(flat, tmp, metadata=metadata), size=size)


def load_tensors(path: str | Path) -> tuple[dict, dict[str, str]]:
    """Read a safetensors file: ``(tensors, metadata)``."""
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, meta
