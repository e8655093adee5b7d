"""The memory cache filled by the device decoder (data.decode: nvjpeg on CUDA; torchvision's CPU decoder
stands in here): the same images as the PIL fill within a grey level or two, and the same handling of bad
files (skipped, substituted by the same image, counted)."""
import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.data import device_augment
from reidkit.data.images import ImageError
from reidkit.data.records import Record
from reidkit.data.train_loader import CachedImages, decode_device
from reidkit.data.transforms import build_resize

SIZE = (32, 16)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 ids x 4 images: JPEGs at the cache size and larger (resized), a PNG, a text file and a truncated
    JPEG named .jpg (both unreadable)."""
    root = tmp_path_factory.mktemp("cache_decode")
    rng = np.random.default_rng(0)
    records = []
    for pid in range(3):
        for k in range(4):
            size = SIZE if k % 2 == 0 else (48, 24)
            arr = (rng.uniform(0, 255, (1, 1, 3)) + rng.normal(0, 20, (*size, 3))).clip(0, 255).astype(np.uint8)
            path = root / f"{pid:04d}_c{k % 2 + 1}s1_{k:06d}_00.jpg"
            if pid == 0 and k == 1:
                path = path.with_suffix(".png")
                Image.fromarray(arr).save(path)
            else:
                Image.fromarray(arr).save(path, quality=92)
            records.append(Record(str(path), pid, k % 2))
    records[5] = Record(records[5].path.replace(".jpg", "_xx.jpg"), 1, 1)
    with open(records[5].path, "w") as f:
        f.write("not an image")
    good = open(records[8].path, "rb").read()
    bad_path = records[8].path.replace(".jpg", "_cut.jpg")
    open(bad_path, "wb").write(good[: len(good) // 2])
    records[8] = Record(bad_path, 2, 0)
    return records


def _cache(records, device=None, on_error="skip"):
    return CachedImages(records, build_resize(SIZE, "bicubic"), lambda img: img, num_workers=0, on_error=on_error,
                        progress=False, decode_device=device)


def _same_bookkeeping(a: CachedImages, b: CachedImages) -> None:
    assert a.num_skipped == b.num_skipped == 2
    assert sorted(a.skipped_paths) == sorted(b.skipped_paths)
    assert np.array_equal(a.pids, b.pids) and np.array_equal(a.camids, b.camids)


def test_device_fill_matches_the_pil_fill(folder):
    pil, dev = _cache(folder), _cache(folder, "cpu")
    _same_bookkeeping(pil, dev)
    assert dev.images.shape == pil.images.shape == (len(folder), *SIZE, 3)
    diff = np.abs(dev.images.astype(int) - pil.images.astype(int))
    at_size = [i for i in range(len(folder)) if i % 4 in (0, 2)]   # decoded only: libjpeg both ways
    assert diff[at_size].max() <= 2
    assert diff.mean() < 0.5 and diff.max() <= 6                    # + F.interpolate vs PIL's bicubic
    # the substitutes are the same images as PIL's: the next image of the same identity
    for i in (5, 8):
        assert np.array_equal(dev.images[i], dev.images[i + 1]) and dev.pids[i] == dev.pids[i + 1]


def test_device_decoder_gets_the_jpegs_in_batches_and_pil_takes_what_it_refuses(folder, monkeypatch):
    calls = []
    real = device_augment.decode_images

    def refuse_every_other(encoded, device):
        calls.append(len(encoded))
        out = real(encoded, device)
        return [None if k % 2 else img for k, img in enumerate(out)]

    monkeypatch.setattr(device_augment, "decode_images", refuse_every_other)
    dev, pil = _cache(folder, "cpu"), _cache(folder)
    # one call for the whole batch; the PNG, the text file and the truncated JPEG never reach it
    assert calls == [len(folder) - 3]
    _same_bookkeeping(pil, dev)
    diff = np.abs(dev.images.astype(int) - pil.images.astype(int))
    assert diff.mean() < 1.0


def test_device_fill_raises_on_the_bad_file_with_on_error_raise(folder):
    with pytest.raises(ImageError, match="_xx"):
        _cache(folder, "cpu", on_error="raise")


def test_decode_device_follows_the_recipe():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert decode_device("auto", cpu) is None and decode_device("pil", cuda) is None
    assert decode_device("auto", cuda) == cuda and decode_device("device", cpu) == cpu
    with pytest.raises(ValueError, match="data.decode"):
        decode_device("nvjpeg", cuda)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fill_matches_the_pil_fill(folder):
    pil, dev = _cache(folder), _cache(folder, "cuda")
    _same_bookkeeping(pil, dev)
    diff = np.abs(dev.images.astype(int) - pil.images.astype(int))
    assert diff.mean() < 1.5 and diff.max() <= 16


@pytest.mark.slow
@pytest.mark.parametrize("method", ["train", "adapt"])
def test_recipes_fill_the_cache_on_the_device_with_data_decode_device(tiny_market, tmp_path, monkeypatch, method):
    from reidkit.config import load_config
    from reidkit.data import train_loader

    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    fills, real = [], train_loader.CachedImages._fill_on_device

    def spy(self, source, size, *args):
        fills.append(size)
        return real(self, source, size, *args)

    monkeypatch.setattr(train_loader.CachedImages, "_fill_on_device", spy)
    common = [f"data.root={tiny_market}", "data.size=[64,32]", "model.preset=vit_micro", "data.num_workers=0",
              "data.cache=memory", "data.decode=device", "data.device_augment=true", f"output={tmp_path / 'run'}"]
    if method == "train":
        from reidkit.methods.finetune import FinetuneConfig, train
        out = train(load_config(FinetuneConfig, None, common + [
            "data.batch_size=8", "eval.num_workers=0", "solver.epochs=1", "solver.warmup_epochs=0"]))
    else:
        from reidkit.methods.adapt import AdaptConfig, adapt
        out = adapt(load_config(AdaptConfig, None, common + [
            "data.batch_size=8", "data.num_instances=4", "cluster.k1=6", "cluster.k2=3", "cluster.eps=0.7",
            "cluster.min_samples=2", "solver.epochs=1", "solver.iters=2", "eval.enabled=false"]))
    assert fills == [(64, 32)] and (out / "last.safetensors").is_file()
