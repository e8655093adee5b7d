"""Serving gallery images without serving anything else.

A URL names an image as ``(root number, path relative to that root)``. The path is attacker
controlled, so it is refused when it is absolute, contains ``..`` or a NUL, or names a file that is
not an image; then the real path (all symlinks resolved) must still lie inside the real root, so
a symlink inside the gallery cannot point out of it.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from reidkit.data.images import is_image_file


class GalleryPathError(ValueError):
    """A requested image path that is refused (``status`` 400) or not there (404)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def resolve_gallery_file(roots: list[Path], root_index: int, relpath: str) -> Path:
    """The real path of ``relpath`` under ``roots[root_index]``, or :class:`GalleryPathError`."""
    if not 0 <= root_index < len(roots):
        raise GalleryPathError(f"no image root #{root_index}", 404)
    if not relpath or "\x00" in relpath or "\\" in relpath:
        raise GalleryPathError("invalid image path")
    pure = PurePosixPath(relpath)
    if pure.is_absolute() or relpath.startswith("/") or any(part in ("..", ".") for part in pure.parts) \
            or os.path.isabs(relpath):
        raise GalleryPathError("image paths must be relative to the gallery root without '..'")
    if not is_image_file(relpath):
        raise GalleryPathError("only image files are served")
    root = Path(os.path.realpath(roots[root_index]))
    if len(root.parts) <= 1:  # a root that resolves to '/' (e.g. through a symlink) serves nothing
        raise GalleryPathError("the gallery root resolves to the filesystem root; refusing", 403)
    target = Path(os.path.realpath(root / pure))
    if not target.is_relative_to(root):
        raise GalleryPathError("image path leaves the gallery root", 403)
    # The requested name was checked above; a symlink 'x.jpg -> notes.txt' or '-> /dev/zero' must
    # be judged by what it points to: an image extension and a regular file.
    if not is_image_file(target):
        raise GalleryPathError("only image files are served", 403)
    try:
        mode = target.stat().st_mode
    except OSError:
        raise GalleryPathError("image not found", 404) from None
    if not stat.S_ISREG(mode):
        raise GalleryPathError("only regular image files are served", 403)
    return target
