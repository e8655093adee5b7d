"""extract_features against a manual forward pass of a tiny model."""
import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.data.records import DatasetError, Record
from reidkit.evaluation.extract import extract_features


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.drop = torch.nn.Dropout(0.5)  # makes train mode visible: eval must switch it off

    def forward(self, x):
        return self.drop(self.conv(x).mean((2, 3)))


def to_tensor(img):
    return torch.from_numpy(np.asarray(img.resize((8, 16)), dtype=np.float32) / 255).permute(2, 0, 1)


@pytest.fixture
def crops(tmp_path):
    rng = np.random.default_rng(0)
    names = ["0001_c1s1_000001_00.jpg", "0001_c2s1_000002_00.png", "0007_c6s2_000100_01.jpg", "mine.png"]
    (tmp_path / "sub").mkdir()
    for i, name in enumerate(names):
        arr = rng.integers(0, 255, (20 + i, 10, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / ("sub" if i == 3 else "") / name)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def manual(model, paths, flip=False):
    x = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        f = model(x)
        if flip:
            f = (f + model(x.flip(3))) / 2
    return f.numpy()


def test_folder_labels_and_values(crops):
    model = Tiny().train()
    fs = extract_features(model, crops, to_tensor, batch_size=3, progress=False)
    assert model.training  # mode restored
    assert [p.split("/")[-1] for p in fs.paths] == ["0001_c1s1_000001_00.jpg", "0001_c2s1_000002_00.png",
                                                    "0007_c6s2_000100_01.jpg", "mine.png"]
    assert fs.pids.tolist() == [1, 1, 7, -1] and fs.camids.tolist() == [0, 1, 5, -1]
    model.eval()
    np.testing.assert_allclose(fs.features, manual(model, fs.paths), rtol=1e-5, atol=1e-6)
    flipped = extract_features(model, fs.paths, to_tensor, batch_size=2, flip=True, normalize=True, progress=False)
    ref = manual(model, fs.paths, flip=True)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(flipped.features, ref, rtol=1e-5, atol=1e-6)
    assert flipped.features.dtype == np.float32 and flipped.pids.tolist() == [-1] * 4


def test_records_and_corrupt_images(crops):
    bad = crops / "0003_c1s1_000001_00.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    recs = [Record(str(crops / "0001_c1s1_000001_00.jpg"), 1, 0), Record(str(bad), 3, 0),
            Record(str(crops / "0007_c6s2_000100_01.jpg"), 7, 5)]
    fs = extract_features(Tiny(), recs, to_tensor, batch_size=2, progress=False)
    assert fs.pids.tolist() == [1, 7] and fs.meta["skipped"] == [str(bad)]
    with pytest.raises(DatasetError, match="0003_c1s1"):
        extract_features(Tiny(), recs, to_tensor, on_error="raise", progress=False)
    with pytest.raises(DatasetError, match="not a folder"):
        extract_features(Tiny(), crops / "missing", to_tensor, progress=False)


def test_bf16_autocast_close(crops):
    model = Tiny().eval()
    a = extract_features(model, crops, to_tensor, progress=False)
    b = extract_features(model, crops, to_tensor, amp_dtype="bf16", progress=False)
    assert b.features.dtype == np.float32
    np.testing.assert_allclose(a.features, b.features, atol=0.05)
