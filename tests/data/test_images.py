"""load_rgb on every image mode, EXIF rotation, and every kind of broken file."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from reidkit.data.images import NEUTRAL_BACKGROUND, ImageError, is_image_file, load_rgb
from reidkit.data.records import DatasetError


def rgb_array(h=8, w=4):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def check_rgb(img, size=(4, 8)):
    assert img.mode == "RGB" and img.size == size
    return np.asarray(img)


def test_rgb_png_is_exact(tmp_path):
    a = rgb_array()
    Image.fromarray(a).save(tmp_path / "x.png")
    assert np.array_equal(check_rgb(load_rgb(tmp_path / "x.png")), a)


def test_grey_and_one_bit(tmp_path):
    g = np.arange(32, dtype=np.uint8).reshape(8, 4) * 8
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = check_rgb(load_rgb(tmp_path / "g.png"))
    assert all(np.array_equal(out[..., c], g) for c in range(3))
    Image.fromarray(g > 100).save(tmp_path / "b.png")
    assert set(np.unique(check_rgb(load_rgb(tmp_path / "b.png")))) <= {0, 255}


def test_rgba_composited_on_neutral_grey(tmp_path):
    a = np.zeros((8, 4, 4), dtype=np.uint8)
    a[..., 0] = 255                 # pure red ...
    a[:4, :, 3] = 255               # ... opaque on top
    a[4:, :, 3] = 0                 # ... fully transparent below
    a[6, 0, 3] = 128                # one half-transparent pixel
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    out = check_rgb(load_rgb(tmp_path / "a.png")).astype(int)
    assert (out[:4] == [255, 0, 0]).all()
    assert (out[4:6] == list(NEUTRAL_BACKGROUND)).all()
    # alpha 128: 255*128/255 + 128*(127/255) ~ 192 red, 128*127/255 ~ 64 for g and b
    assert np.allclose(out[6, 0], [192, 64, 64], atol=2)
    la = Image.fromarray(a[..., 0], "L")
    la.putalpha(Image.fromarray(a[..., 3]))
    la.save(tmp_path / "la.png")
    assert (check_rgb(load_rgb(tmp_path / "la.png"))[5] == NEUTRAL_BACKGROUND[0]).all()


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (4, 8), 1)
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    p.paste(0, (0, 0, 4, 4))        # top half uses index 0, the transparent colour
    p.save(tmp_path / "p.png", transparency=0)
    p.save(tmp_path / "p.gif", transparency=0)
    for name in ("p.png", "p.gif"):
        out = check_rgb(load_rgb(tmp_path / name)).astype(int)
        assert (out[:4] == list(NEUTRAL_BACKGROUND)).all() and (out[4:] == [0, 0, 255]).all()
    p.save(tmp_path / "opaque.png")
    out = check_rgb(load_rgb(tmp_path / "opaque.png")).astype(int)
    assert (out[:4] == 0).all()


def test_cmyk_jpeg_and_tiff(tmp_path):
    cmyk = Image.new("CMYK", (4, 8), (0, 255, 255, 0))  # no cyan/black, full magenta+yellow = red
    cmyk.save(tmp_path / "c.jpg", quality=100)
    cmyk.save(tmp_path / "c.tif")
    for name in ("c.jpg", "c.tif"):
        out = check_rgb(load_rgb(tmp_path / name)).astype(int)
        assert np.allclose(out, [255, 0, 0], atol=8), name


def test_16_bit_and_32_bit_scaled_by_depth(tmp_path):
    v = np.array([[0, 257 * 100], [65535, 257 * 200]], dtype=np.uint16).repeat(4, 0).repeat(2, 1)
    Image.fromarray(v).save(tmp_path / "d16.png")          # reopens as I;16 or I
    Image.fromarray(v.astype(np.int32)).save(tmp_path / "d32.tif")
    for name in ("d16.png", "d32.tif"):
        out = check_rgb(load_rgb(tmp_path / name))
        assert out[0, 0, 0] == 0 and out[0, 2, 0] == 100 and out[4, 0, 0] == 255 and out[4, 2, 1] == 200
    # 8-bit values stored in a 32-bit image keep their values (no stretching)
    Image.fromarray(np.full((8, 4), 37, dtype=np.int32)).save(tmp_path / "small.tif")
    assert (check_rgb(load_rgb(tmp_path / "small.tif")) == 37).all()
    f = np.linspace(0, 1, 32, dtype=np.float32).reshape(8, 4)
    Image.fromarray(f).save(tmp_path / "f.tif")
    out = check_rgb(load_rgb(tmp_path / "f.tif"))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tif"])
def test_exif_rotation(tmp_path, ext):
    a = np.zeros((32, 16, 3), dtype=np.uint8)
    a[:8, :8] = 255                            # white block in the top-left corner (stored pixels)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6                           # "rotate 90 CW to display"
    opts = {"quality": 100} if ext in ("jpg", "webp") else {}
    img.save(tmp_path / f"r.{ext}", exif=exif, **opts)
    out = check_rgb(load_rgb(tmp_path / f"r.{ext}"), size=(32, 16)).astype(int)  # displayed: landscape
    assert out[:8, -8:].mean() > 200 and out[:, :-8].mean() < 30  # block now top-right
    img.save(tmp_path / f"plain.{ext}", **opts)
    assert load_rgb(tmp_path / f"plain.{ext}").size == (16, 32)


def jpeg_bytes():
    from io import BytesIO
    b = BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(b, "JPEG")
    return b.getvalue()


@pytest.mark.parametrize("cut", [2, 50, 0.5])
def test_truncated_jpeg_is_detected(tmp_path, cut):
    data = jpeg_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else len(data) - cut
    (tmp_path / "t.jpg").write_bytes(data[:n])
    with pytest.raises(ImageError) as e:
        load_rgb(tmp_path / "t.jpg")
    assert str(tmp_path / "t.jpg") in str(e.value) and "truncated" in str(e.value)


def test_truncated_jpeg_detected_even_when_pillow_pads(tmp_path, monkeypatch):
    """Some libraries set LOAD_TRUNCATED_IMAGES globally; we still refuse a JPEG without its end."""
    (tmp_path / "t.jpg").write_bytes(jpeg_bytes()[:-2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageError, match="end marker missing"):
        load_rgb(tmp_path / "t.jpg")
    (tmp_path / "ok.jpg").write_bytes(jpeg_bytes() + b"\0" * 100)   # trailing padding is fine
    assert load_rgb(tmp_path / "ok.jpg").size == (32, 64)


def test_broken_files_name_path_and_problem(tmp_path):
    (tmp_path / "text.jpg").write_text("this is not an image\n")
    (tmp_path / "empty.png").write_bytes(b"")
    png = (tmp_path / "x.png")
    Image.fromarray(rgb_array(64, 64)).save(png)
    (tmp_path / "half.png").write_bytes(png.read_bytes()[:200])
    (tmp_path / "dir.jpg").mkdir()
    cases = {"text.jpg": "not an image", "empty.png": "not an image", "half.png": "truncated",
             "missing.jpg": "file not found", "dir.jpg": "directory"}
    for name, problem in cases.items():
        with pytest.raises(ImageError) as e:
            load_rgb(tmp_path / name)
        assert str(tmp_path / name) in str(e.value) and problem in str(e.value), (name, str(e.value))
        assert isinstance(e.value, DatasetError) and isinstance(e.value, ValueError)


def test_is_image_file():
    assert is_image_file("a/B.JPG") and is_image_file("x.jpeg") and is_image_file("x.webp")
    assert not is_image_file("Thumbs.db") and not is_image_file("a.jpg.txt") and not is_image_file("jpg")


@pytest.mark.parametrize("workers", [1, 3])
def test_verify_images_reports_each_bad_file(tmp_path, workers):
    from reidkit.data.images import verify_images

    paths = []
    for i in range(1100):  # more than one submission block (1024)
        p = tmp_path / f"{i}.png"
        if i % 500 == 5:
            p.write_bytes(b"\x89PNG\r\n\x1a\n broken")
        else:
            Image.fromarray(np.full((2, 2, 3), i % 256, dtype=np.uint8)).save(p)
        paths.append(str(p))
    seen = []
    bad = verify_images(paths, workers=workers, on_progress=seen.append)
    assert [p for p, _ in bad] == [paths[5], paths[505], paths[1005]]
    assert all(problem and not problem.startswith(str(tmp_path)) for _, problem in bad)
    assert sum(seen) == len(paths)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` RGB pixels (the fault suite's 144-Mpx file)."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_pixel_limit_refuses_huge_images_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_declaring(12000, 12000))  # 144 Mpx: Pillow alone only warns
    with pytest.raises(ImageError, match=r"12000x12000 pixels \(144 Mpx\) exceeds the limit"):
        load_rgb(path)


def test_on_error_raise_in_a_worker_is_one_line(tmp_path):
    """data.on_error=raise with DataLoader workers: the main process sees the original message, not
    the worker's traceback that torch packs into the re-raised exception."""
    from torch.utils.data import DataLoader

    from reidkit.data.image_dataset import ImageDataset
    from reidkit.data.records import Record

    bad = tmp_path / "0001_c1_bad.jpg"
    bad.write_text("not an image")
    loader = DataLoader(ImageDataset([Record(str(bad), 1, 0)], np.asarray, on_error="raise"), num_workers=1)
    with pytest.raises(ImageError) as info:
        next(iter(loader))
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    assert msg.startswith(f"{bad}: not an image") and msg.endswith("(in DataLoader worker process 0)")
