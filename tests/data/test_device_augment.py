"""Device-side train augmentation: the same pixels as the per-sample path, the recipe's distributions."""
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.data import device_augment as da
from reidkit.data.records import Record
from reidkit.data.train_loader import build_train_loader
from reidkit.data.transforms import build_train_transform, build_usl_train_transform, split_resize

SIZE = (32, 16)


def _images(n, size=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for _ in range(n)]


def _per_sample(transform, imgs, seeds):
    _, rest = split_resize(transform)
    out = []
    for img, s in zip(imgs, seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            out.append(rest(img))
    return torch.stack(out)


def _batched(transform, imgs, seeds):
    wt, aug = da.worker_transform(transform)
    draw = wt.transforms[1]
    samples = []
    for i, (img, s) in enumerate(zip(imgs, seeds)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            samples.append((draw(img), 0, 0, i))
    batch, *_ = da.collate(samples)
    return aug(batch), batch


PIPELINES = {
    "transreid": lambda: build_train_transform(SIZE),
    "usl": lambda: build_usl_train_transform(SIZE),
    "no pad": lambda: build_train_transform(SIZE, pad=0),
    "no erasing, no flip": lambda: build_train_transform(SIZE, erasing=0, hflip=0),
    "always erase and flip": lambda: build_train_transform(SIZE, erasing=1.0, hflip=1.0, pad=4),
}


@pytest.mark.parametrize("name", PIPELINES)
def test_batched_equals_per_sample_for_the_same_draws(name):
    tf = PIPELINES[name]()
    imgs, seeds = _images(48), list(range(1000, 1048))
    ref = _per_sample(tf, imgs, seeds)
    got, batch = _batched(tf, imgs, seeds)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    assert torch.equal(got, ref), name
    if "no erasing" not in name:
        assert int((batch.erase[:, 2] > 0).sum()) > 0          # the test covered erased boxes
    if name != "no erasing, no flip":
        assert 0 < int(batch.flip.sum()) < 48 or name.startswith("always")


def test_loader_batches_match_the_per_sample_loader(tmp_path):
    imgs = _images(32, size=(40, 20), seed=1)
    records = []
    for i, img in enumerate(imgs):
        path = tmp_path / f"{i:03d}.png"
        img.save(path)
        records.append(Record(str(path), i // 4, 0))
    Image.new("RGB", (1, 1)).save(tmp_path / "x.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    records.append(Record(str(tmp_path / "bad.png"), 7, 0))     # substituted and counted, as today
    tf = build_train_transform(SIZE)
    for cache in ("none", "memory"):
        ref_loader, ref_sampler, ref_ds = build_train_loader(records, tf, batch_size=8, num_instances=4, seed=5,
                                                             size=SIZE, num_workers=0, cache=cache, progress=False)
        loader, sampler, ds, aug = da.build_device_train_loader(records, tf, batch_size=8, num_instances=4, seed=5,
                                                                size=SIZE, num_workers=0, cache=cache, progress=False)
        for epoch in (0, 1):
            ref_sampler.set_epoch(epoch)
            sampler.set_epoch(epoch)
            n = 0
            for (x, p, c, i), (ub, p2, c2, i2) in zip(ref_loader, loader):
                assert isinstance(ub, da.UInt8Batch) and ub.images.dtype == torch.uint8
                assert torch.equal(p, p2) and torch.equal(i, i2) and torch.equal(c, c2)
                assert torch.equal(aug(ub), x), (cache, epoch)
                n += 1
            assert n > 0
        assert ds.num_skipped == ref_ds.num_skipped >= 1


def test_worker_count_does_not_change_the_batches(tmp_path):
    records = []
    for i, img in enumerate(_images(16, seed=2)):
        img.save(tmp_path / f"{i}.png")
        records.append(Record(str(tmp_path / f"{i}.png"), i // 4, 0))
    tf = build_train_transform(SIZE)
    outs = []
    for workers in (0, 2):
        loader, sampler, _, aug = da.build_device_train_loader(records, tf, batch_size=8, num_instances=4, seed=1,
                                                               size=SIZE, num_workers=workers, cache="none",
                                                               progress=False)
        sampler.set_epoch(0)
        outs.append([aug(b[0]) for b in loader])
    assert all(torch.equal(a, b) for a, b in zip(*outs))


def test_refuses_a_pipeline_it_cannot_run():
    import torchvision.transforms as T

    with pytest.raises(ValueError, match="ColorJitter"):
        da.AugmentRecipe.from_transform(T.Compose([T.Resize(SIZE), T.ColorJitter(0.4), T.ToTensor(),
                                                   T.Normalize((0.5,) * 3, (0.5,) * 3)]))


# ------------------------------------------------------------------ distributions of the draws

def _draws(transform, n, base=0):
    recipe = da.AugmentRecipe.from_transform(transform)
    rows = []
    with torch.random.fork_rng(devices=[]):
        for s in range(base, base + n):
            torch.manual_seed(s)
            rows.append(da.draw_params(recipe))
    return rows


def _reference_boxes(n, h, w, area, aspect, log_aspect, attempts, rng):
    """Independent numpy model of the recipe's erasing: (area fraction, aspect h/w) of boxes that fit."""
    out = []
    for _ in range(n):
        for _ in range(attempts):
            target = rng.uniform(*area) * h * w
            r = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1]))) if log_aspect else rng.uniform(*aspect)
            eh, ew = int(round(math.sqrt(target * r))), int(round(math.sqrt(target / r)))
            if 0 < eh < h and 0 < ew < w:
                out.append((eh * ew / (h * w), eh / ew))
                break
    return np.array(out)


def _ks(a, b):
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


@pytest.mark.parametrize("usl", [False, True])
def test_draw_distributions_match_the_recipe(usl):
    size, n = (64, 32), 2000
    tf = build_usl_train_transform(size) if usl else build_train_transform(size)
    rows = _draws(tf, n)
    flips = np.array([r[0] for r in rows])
    tops, lefts = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    boxes = np.array([r[3] for r in rows])
    sigma = math.sqrt(0.25 / n)
    assert abs(flips.mean() - 0.5) < 4.5 * sigma                      # flip p = 0.5
    for offs in (tops, lefts):                                        # crop offsets uniform on 0..20
        counts = np.bincount(offs, minlength=21)
        assert len(counts) == 21
        chi2 = float(((counts - n / 21) ** 2 / (n / 21)).sum())
        assert chi2 < 52.6                                            # chi2(20) at p = 1e-4
    erased = boxes[:, 2] > 0
    assert abs(erased.mean() - 0.5) < 4.5 * sigma                     # erasing p = 0.5 (boxes fit easily)
    er = da.AugmentRecipe.from_transform(tf).erasing
    got_area = boxes[erased, 2] * boxes[erased, 3] / (size[0] * size[1])
    got_aspect = boxes[erased, 2] / boxes[erased, 3]
    ref = _reference_boxes(2000, *size, er.area, er.aspect, er.log_aspect, er.attempts, np.random.default_rng(0))
    crit = 1.95 * math.sqrt((len(got_area) + len(ref)) / (len(got_area) * len(ref)))   # KS at p = 0.001
    assert _ks(got_area, ref[:, 0]) < crit
    assert _ks(got_aspect, ref[:, 1]) < crit
    assert got_area.min() >= er.area[0] * 0.5 and got_area.max() <= er.area[1] * 1.2
    # box positions: uniform offsets inside the image
    ey, eh = boxes[erased, 0], boxes[erased, 2]
    rel = ey / np.maximum(size[0] - eh, 1)
    assert 0.45 < rel.mean() < 0.55


# ------------------------------------------------------------------ decode and resize

def _jpeg(img, **kw):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_plain_jpeg_detection():
    img = _images(1, size=(40, 24))[0]
    assert da.is_plain_jpeg(_jpeg(img, quality=90))
    assert not da.is_plain_jpeg(_jpeg(img, progressive=True))
    assert not da.is_plain_jpeg(_jpeg(img.convert("L")))
    assert not da.is_plain_jpeg(_jpeg(img)[:-200])                   # truncated: PIL names the problem
    exif = Image.Exif()
    exif[0x0112] = 6
    assert not da.is_plain_jpeg(_jpeg(img, exif=exif.tobytes()))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert not da.is_plain_jpeg(buf.getvalue())


def test_read_encoded_routes_files(tmp_path):
    img = _images(1, size=(40, 24))[0]
    (tmp_path / "a.jpg").write_bytes(_jpeg(img))
    img.save(tmp_path / "b.png")
    (tmp_path / "c.jpg").write_bytes(b"garbage")
    data, arr, err = da.read_encoded(str(tmp_path / "a.jpg"))
    assert data is not None and arr is None and err is None
    data, arr, err = da.read_encoded(str(tmp_path / "b.png"))
    assert data is None and np.array_equal(arr, np.asarray(img))
    data, arr, err = da.read_encoded(str(tmp_path / "c.jpg"))
    assert data is None and arr is None and "c.jpg" in err


def test_decode_and_resize_match_pil_closely():
    imgs = _images(3, size=(40, 24)) + _images(2, size=(50, 30), seed=3)
    enc = [torch.frombuffer(bytearray(_jpeg(im, quality=95)), dtype=torch.uint8) for im in imgs]
    dec = da.decode_images(enc, torch.device("cpu"))
    for d, e in zip(dec, enc):
        pil = np.asarray(Image.open(io.BytesIO(e.numpy().tobytes())).convert("RGB"))
        assert d.shape == (3, *pil.shape[:2])
        assert np.abs(d.permute(1, 2, 0).numpy().astype(int) - pil.astype(int)).max() <= 2
    out = da.resize_images(dec, SIZE, "bilinear")
    assert out.shape == (5, 3, *SIZE) and out.dtype == torch.uint8
    for d, o in zip(dec, out):
        pil = Image.fromarray(d.permute(1, 2, 0).numpy()).resize(SIZE[::-1], Image.Resampling.BILINEAR)
        diff = np.abs(o.permute(1, 2, 0).numpy().astype(int) - np.asarray(pil).astype(int))
        assert diff.mean() < 1.0 and diff.max() <= 4
    # a bad file in a batch comes back None, the others still decode
    bad = torch.frombuffer(bytearray(b"\xff\xd8\xff\xe0 not a jpeg \xff\xd9"), dtype=torch.uint8)
    mixed = da.decode_images([enc[0], bad, enc[1]], torch.device("cpu"))
    assert mixed[1] is None and torch.equal(mixed[0], dec[0]) and torch.equal(mixed[2], dec[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_decode_and_augment_match_cpu():
    imgs = _images(4, size=(40, 24))
    enc = [torch.frombuffer(bytearray(_jpeg(im, quality=95)), dtype=torch.uint8) for im in imgs]
    cpu = da.decode_images(enc, torch.device("cpu"))
    gpu = da.decode_images(enc, torch.device("cuda"))
    for c, g in zip(cpu, gpu):
        assert g.is_cuda and (c.int() - g.cpu().int()).abs().max() <= 3
    tf = build_train_transform(SIZE)
    ref, batch = _batched(tf, _images(16), list(range(16)))
    wt, aug = da.worker_transform(tf)
    got = aug.to("cuda")(batch.to("cuda"))
    torch.testing.assert_close(got.cpu(), ref, atol=1e-6, rtol=0)
