"""ImageDataset / UnlabelledImageDataset: outputs, skip-or-raise, substitutes, counts across workers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from reidkit.data.image_dataset import ImageDataset, UnlabelledImageDataset
from reidkit.data.images import ImageError
from reidkit.data.records import DatasetError, Record

from data_fakes import write_image


def to_tensor(img):
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


@pytest.fixture
def records(tmp_path):
    """pid 0: 3 images (the 2nd corrupt), pid 1: 1 corrupt image, pid 2: 2 images."""
    recs = []
    for i, (pid, cam, ok) in enumerate([(0, 0, True), (0, 1, False), (0, 2, True), (1, 0, False),
                                        (2, 3, True), (2, 4, True)]):
        p = tmp_path / f"{i}.jpg"
        if ok:
            write_image(p, seed=i)
        else:
            p.write_text("not a jpeg")
        recs.append(Record(str(p), pid, cam))
    return recs


def test_outputs_and_transform(records):
    ds = ImageDataset(records, transform=to_tensor)
    img, pid, camid, index = ds[4]
    assert img.shape == (3, 8, 4) and img.dtype == torch.uint8 and (pid, camid, index) == (2, 3, 4)
    raw = ImageDataset(records)[0][0]
    assert raw.mode == "RGB"


def test_skip_uses_same_identity_then_next_image(records):
    ds = ImageDataset(records, transform=to_tensor)
    img, pid, camid, index = ds[1]          # corrupt -> next image of pid 0 after it: record 2
    assert (pid, camid, index) == (0, 2, 1)
    assert torch.equal(img, ds[2][0])
    img, pid, camid, index = ds[3]          # only image of pid 1 -> next decodable record: 4
    assert (pid, camid, index) == (2, 3, 3) and torch.equal(img, ds[4][0])
    assert ds.num_skipped == 2 and ds.skipped_paths == [records[1].path, records[3].path]
    assert torch.equal(ds[1][0], ds[2][0])  # deterministic on repeat; known-bad file not counted twice
    assert ds.num_skipped == 2


def test_raise_names_the_file(records):
    ds = ImageDataset(records, on_error="raise")
    with pytest.raises(ImageError, match=r"1\.jpg: not an image"):
        ds[1]
    with pytest.raises(ValueError, match="on_error"):
        ImageDataset(records, on_error="ignore")


def test_all_broken_is_an_error(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_text("no")
    with pytest.raises(DatasetError, match="dataset looks broken"):
        ImageDataset([Record(str(p), 0, 0)] * 3)[0]


def test_skipped_count_seen_from_dataloader_workers(records):
    ds = ImageDataset(records, transform=to_tensor)
    loader = DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    pids, indices = [], []
    for _, pid, _, index in loader:
        pids += pid.tolist()
        indices += index.tolist()
    assert indices == list(range(6)) and pids == [0, 0, 0, 2, 2, 2]
    assert ds.num_skipped == 2


def test_unlabelled_dataset(records):
    ds = UnlabelledImageDataset([r.path for r in records], transform=to_tensor)
    assert len(ds) == 6
    img, index = ds[3]                      # corrupt -> next in order
    assert index == 3 and torch.equal(img, ds[4][0])
    assert ds.num_skipped == 1 and ds.skipped_paths == [records[3].path]
    from_records = UnlabelledImageDataset(records, on_error="raise")
    assert from_records.paths[5] == records[5].path
    with pytest.raises(ImageError):
        from_records[1]


def test_unlabelled_paths_roundtrip_unicode():
    paths = ["/a/ü/ß.jpg", "", "/b/c d/e.png", "/x/日本.jpg"]
    ds = UnlabelledImageDataset(paths)
    assert [ds.paths[i] for i in range(len(paths))] == paths
