"""MSMT17 V1 / V2 list-file reader."""
from __future__ import annotations

import pytest

from reidkit.data.datasets import load_dataset
from reidkit.data.records import DatasetError

from data_fakes import write_image


def msmt_tree(base, version="v1", train=(), val=(), query=(), gallery=()):
    """Entries are (pid label, camera 1..15, index); written as '<pid>/<pid>_<i>_<cam>_0303morning_0015_0.jpg'."""
    train_dir, test_dir = ("train", "test") if version == "v1" else ("mask_train_v2", "mask_test_v2")
    for list_name, folder, entries in (("list_train.txt", train_dir, train), ("list_val.txt", train_dir, val),
                                       ("list_query.txt", test_dir, query),
                                       ("list_gallery.txt", test_dir, gallery)):
        lines = []
        for pid, cam, i in entries:
            rel = f"{pid:04d}/{pid:04d}_{i:03d}_{cam:02d}_0303morning_0015_0.jpg"
            write_image(base / folder / rel, seed=i)
            lines.append(f"{rel} {pid}")
        (base / list_name).write_text("\n".join(lines) + "\n")
    return base


def test_msmt17_v1_with_val_by_default(tmp_path):
    msmt_tree(tmp_path / "MSMT17_V1", train=[(0, 1, 0), (0, 15, 1), (3, 2, 0)], val=[(3, 7, 5), (9, 4, 0)],
              query=[(0, 3, 0), (1, 5, 0)], gallery=[(0, 9, 1), (1, 12, 2), (2, 1, 3)])
    ds = load_dataset("msmt17", tmp_path)
    assert ds.name == "msmt17 (v1)"
    # labels 0, 3, 9 relabelled to 0, 1, 2; cameras 1-based in the name -> 0-based.
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 0), (0, 14), (1, 1), (1, 6), (2, 3)]
    assert sorted((r.pid, r.camid) for r in ds.query) == [(0, 2), (1, 4)]
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(0, 8), (1, 11), (2, 0)]
    assert all("/test/" in r.path for r in ds.query + ds.gallery)
    only_train = load_dataset("msmt17", tmp_path, combine_val=False)
    assert len(only_train.train) == 3


def test_msmt17_v2_and_version_choice(tmp_path):
    msmt_tree(tmp_path / "MSMT17_V2", "v2", train=[(0, 1, 0)], query=[(0, 2, 0)], gallery=[(0, 3, 0)])
    ds = load_dataset("msmt17", tmp_path)
    assert ds.name == "msmt17 (v2)" and all("mask_test_v2" in r.path for r in ds.query)
    msmt_tree(tmp_path / "MSMT17_V1", "v1", train=[(0, 1, 0), (1, 1, 0)], query=[(0, 2, 0)],
              gallery=[(0, 3, 0)])
    assert len(load_dataset("msmt17", tmp_path).train) == 2  # auto prefers V1
    assert len(load_dataset("msmt17", tmp_path, version="v2").train) == 1


def test_msmt17_bad_lines_missing_files_and_lists(tmp_path):
    base = msmt_tree(tmp_path, train=[(0, 1, 0), (1, 2, 0)], query=[(0, 2, 0)], gallery=[(0, 3, 0)])
    with open(base / "list_train.txt", "a") as f:
        f.write("0005/0005_000_01_x_0_0.jpg notanint\n0006/0006_000_03_x_0_0.jpg 6\n")
    ds = load_dataset("msmt17", tmp_path)
    msgs = "\n".join(ds.problems)
    assert "list_train.txt: 1 malformed line(s)" in msgs and "line 3" in msgs
    assert "1 listed image(s) not found" in msgs and "0006_000_03" in msgs
    assert len(ds.train) == 2
    (base / "list_query.txt").unlink()
    with pytest.raises(DatasetError) as e:
        load_dataset("msmt17", tmp_path)
    assert str(base / "list_query.txt") in str(e.value) and "missing query list file" in str(e.value)


def test_msmt17_missing_folders(tmp_path):
    (tmp_path / "MSMT17_V1").mkdir()
    with pytest.raises(DatasetError, match="missing image folder"):
        load_dataset("msmt17", tmp_path)
