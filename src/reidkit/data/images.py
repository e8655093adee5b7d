"""Robust image loading: any file a user throws at us becomes an RGB ``PIL.Image`` or a clear error.

Real ReID folders are messy: grey crops, RGBA PNGs from annotation tools, CMYK JPEGs from print
pipelines, 16-bit TIFFs from thermal or industrial cameras, palette GIFs with a transparent colour,
phone photos rotated by an EXIF tag, half-copied (truncated) JPEGs and text files named ``.jpg``.
``load_rgb`` turns every decodable one into an 8-bit RGB image and raises ``ImageError`` (naming the
path and the problem) for the rest; it never pads a truncated file silently.
"""
from __future__ import annotations

import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from reidkit.data.records import DatasetError

# Extensions treated as images when scanning folders (lower case). Anything else is skipped and counted.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif",
                              ".ppm", ".pgm", ".pbm", ".pnm", ".jfif"})

# Background for transparent pixels: mid-grey, which is ~0 after the recipes' 0.5/0.5 normalisation,
# so a transparent border carries no colour signal.
NEUTRAL_BACKGROUND = (128, 128, 128)

_EXTENSION_TUPLE = tuple(sorted(IMAGE_EXTENSIONS))


# Largest image decoded for training or extraction: 2**26 = 67 Mpx (an 8K frame is 33 Mpx; a person
# crop is ~0.03 Mpx). Pillow alone only warns between 89 and 179 Mpx, so a 144-Mpx PNG would be
# decoded (~430 MB) with nothing but its raw warning; the web upload path has its own, stricter limit.
MAX_PIXELS = 1 << 26

# Our limit is checked on the header right after Image.open, so Pillow's warning adds nothing.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_WORKER_HEADER = re.compile(r"^Caught \w+ in (DataLoader worker process \d+)\.")


class ImageError(DatasetError):
    """An image file that cannot be decoded (missing, corrupt, truncated, not an image).

    When a DataLoader worker raises it, torch re-raises ``ImageError(<the worker's whole
    traceback>)`` in the main process; that text is cut back to the original one-line message
    (``"<path>: <problem> (in DataLoader worker process N)"``), so ``data.on_error=raise`` shows
    one line, not a traceback.
    """

    def __init__(self, message: str = "", *args):
        super().__init__(_from_worker(message) if isinstance(message, str) else message, *args)


def _from_worker(message: str) -> str:
    head = _WORKER_HEADER.match(message)
    if head is None or "Traceback" not in message:
        return message
    last = [ln for ln in message.strip().splitlines() if ln.strip()][-1]
    original = last.split("ImageError: ", 1)[1] if "ImageError: " in last else last
    return f"{original} (in {head.group(1)})"


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has an image extension (case-insensitive). Does not open the file."""
    # str.endswith with a tuple runs in C: ~6x faster than splitext, which matters for millions of files.
    return os.fspath(path).lower().endswith(_EXTENSION_TUPLE)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully and return an 8-bit RGB image, EXIF orientation applied.

    Mode handling: grey / 1-bit / YCbCr / CMYK convert directly; RGBA, LA, PA and palette images with
    a transparent colour are composited on ``NEUTRAL_BACKGROUND``; 16-bit and 32-bit integer and float
    images are scaled to 0..255 by their bit depth (not stretched per image, so brightness is kept).
    Multi-frame files (GIF, TIFF) give their first frame.

    Raises ``ImageError`` naming the path and the problem.
    """
    path = os.fspath(path)
    try:
        # (No warnings.catch_warnings here: it is not thread-safe, and verify_images uses threads.)
        with open(path, "rb") as f:
            img = Image.open(f)  # reads the header only
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{path}: refused, {w}x{h} pixels ({w * h / 1e6:.0f} Mpx) exceeds the limit "
                                 f"of {MAX_PIXELS / 1e6:.0f} Mpx (a possible decompression bomb); resize it")
            img.load()  # force the full decode inside the try: truncation shows up here
            if ImageFile.LOAD_TRUNCATED_IMAGES and img.format == "JPEG":
                # Another library switched Pillow to pad truncated files silently; check the end marker.
                _check_jpeg_end(f, path)
            if _may_be_rotated(img):
                img = ImageOps.exif_transpose(img)
            return _to_rgb(img, path)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (no known image format; wrong extension or "
                         f"damaged header, {_size(path)})") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused, too many pixels ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        problem = str(e) or type(e).__name__
        if "truncated" in problem.lower() or isinstance(e, EOFError):
            problem = f"truncated or incomplete image data ({problem}, {_size(path)})"
        else:
            problem = f"corrupt image ({problem})"
        raise ImageError(f"{path}: {problem}") from None


def _may_be_rotated(img: Image.Image) -> bool:
    """True when an EXIF orientation tag asks for a rotation or flip.

    Parsing EXIF costs ~10 % of decoding a Market-sized crop, so it is read only when the file has
    EXIF data at all (JPEG/PNG/WebP keep it in ``info['exif']``; TIFF in its own tags).
    """
    if "exif" not in img.info and img.format not in ("TIFF", "MPO"):
        return False
    return img.getexif().get(0x0112, 1) != 1


def _to_rgb(img: Image.Image, path: str) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, NEUTRAL_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_high_depth_to_uint8(np.asarray(img), mode)).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageError(f"{path}: unsupported image mode {mode!r} ({e})") from None


def _high_depth_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 16/32-bit integer or float array to uint8 by its nominal range."""
    a = a.astype(np.float64)
    if a.size == 0:
        return a.astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    if mode.startswith("I;16"):
        scale, offset = 255.0 / 65535.0, 0.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scale, offset = 255.0, 0.0          # float images in [0, 1]
    elif lo >= 0.0 and hi <= 255.0:
        scale, offset = 1.0, 0.0            # 8-bit data stored in a wide mode
    elif lo >= 0.0 and hi <= 65535.0:
        scale, offset = 255.0 / 65535.0, 0.0  # 16-bit data (Pillow opens 16-bit PNGs as "I")
    else:
        scale, offset = 255.0 / (hi - lo), -lo  # unknown range: stretch
    return np.clip(np.rint((a + offset) * scale), 0, 255).astype(np.uint8)


def _check_jpeg_end(f, path: str) -> None:
    """Raise if a JPEG lacks its end-of-image marker (FF D9) near the end of the file.

    Inside entropy-coded data every 0xFF byte is followed by 0x00 or a restart marker, so FF D9 in
    the tail can only be the real end marker (trailing padding after it is allowed).
    """
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - 65536))
    if b"\xff\xd9" not in f.read():
        raise ImageError(f"{path}: truncated or incomplete image data (JPEG end marker missing, "
                         f"{size} bytes)")


def _size(path: str) -> str:
    try:
        return f"{Path(path).stat().st_size} bytes"
    except OSError:
        return "size unknown"


def verify_images(paths: Sequence[str], workers: int = 2,
                  on_progress: Callable[[int], None] | None = None) -> list[tuple[str, str]]:
    """Decode every file fully; return ``(path, problem)`` for each one ``load_rgb`` refuses.

    Threads suffice: Pillow releases the GIL while decoding. ``on_progress(n)`` is called with the
    number of files finished since the last call.
    """
    def check(path: str) -> tuple[str, str] | None:
        try:
            load_rgb(path)
        except ImageError as e:
            return path, str(e).removeprefix(f"{path}: ")
        return None

    bad: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # Submit in blocks: one future per file for millions of files would not fit in memory.
        for start in range(0, len(paths), 1024):
            block = paths[start:start + 1024]
            results = pool.map(check, block) if workers > 1 else map(check, block)
            bad += [r for r in results if r is not None]
            if on_progress is not None:
                on_progress(len(block))
    return bad
