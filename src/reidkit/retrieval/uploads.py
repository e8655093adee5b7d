"""Validating an uploaded query image before any pixel is decoded.

An upload is untrusted bytes. In order, we refuse: too many bytes (checked while reading, so a
huge body is never held in memory), a format that is not a plain photo format (sniffed from the
bytes, never from the client's file name or Content-Type), and too many pixels (read from the
header before decoding: a 100 kB PNG can declare 50,000 x 50,000 pixels and decode to 7.5 GB,
the "decompression bomb"). Only then is the image decoded, converted to RGB and returned.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")


class UploadError(ValueError):
    """A refused upload; ``status`` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 10 * 1024 * 1024      # 10 MiB: a person crop is ~10-100 kB
    max_pixels: int = 4096 * 4096          # width * height
    max_side: int = 8192                   # pixels, either side

    def as_dict(self) -> dict:
        return {"max_bytes": self.max_bytes, "max_pixels": self.max_pixels, "max_side": self.max_side,
                "formats": list(ALLOWED_FORMATS)}


def check_declared_length(content_length: str | None, limits: UploadLimits) -> None:
    """Refuse early (before reading) when the client declares a body over the limit."""
    if content_length is None:
        return
    try:
        n = int(content_length)
    except ValueError:
        raise UploadError(f"invalid Content-Length {content_length!r}") from None
    if n > limits.max_bytes + 64 * 1024:  # slack for multipart boundaries and headers
        raise UploadError(f"upload of {n} bytes exceeds the limit of {limits.max_bytes} bytes", 413)


def decode_upload(data: bytes, limits: UploadLimits = UploadLimits(), name: str = "upload") -> Image.Image:
    """Validated bytes -> RGB ``PIL.Image`` (EXIF orientation applied); else :class:`UploadError`."""
    if len(data) == 0:
        raise UploadError(f"{name}: empty upload")
    if len(data) > limits.max_bytes:
        raise UploadError(f"{name}: {len(data)} bytes exceeds the limit of {limits.max_bytes} bytes", 413)
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns above MAX_IMAGE_PIXELS and raises above twice that;
            # our limit below is stricter and explicit, so its warning is noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # lazy: reads the header only
    except Image.DecompressionBombError:
        raise UploadError(f"{name}: refused, the image declares too many pixels (decompression bomb)", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UploadError(f"{name}: not an image; accepted formats are {', '.join(ALLOWED_FORMATS)}", 415) from None
    if img.format not in ALLOWED_FORMATS:
        raise UploadError(f"{name}: image format {img.format} is not accepted; use {', '.join(ALLOWED_FORMATS)}", 415)
    w, h = img.size
    if w < 1 or h < 1:
        raise UploadError(f"{name}: image has no pixels ({w}x{h})")
    if w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
        raise UploadError(f"{name}: {w}x{h} pixels exceeds the limit ({limits.max_side} per side, "
                          f"{limits.max_pixels} in total); refused as a possible decompression bomb", 413)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
        if img.getexif().get(0x0112, 1) != 1:
            img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            background = Image.new("RGB", img.size, (128, 128, 128))  # ~0 after 0.5/0.5 normalisation
            background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
            return background
        return img.convert("RGB")
    except Image.DecompressionBombError:
        raise UploadError(f"{name}: refused, decompression bomb", 413) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise UploadError(f"{name}: corrupt or truncated {img.format} image ({e})") from None
