"""Generic readers: identity folders and the CSV manifest."""
from __future__ import annotations

import pytest

from reidkit.data.datasets import load_dataset
from reidkit.data.records import DatasetError

from data_fakes import write_image


def test_identity_folders_single_camera(tmp_path):
    for ident, n in (("alice", 2), ("bob", 1), ("carol", 3)):
        for i in range(n):
            write_image(tmp_path / ident / f"{i}.png", seed=i)
    write_image(tmp_path / "loose.jpg")
    (tmp_path / "bob" / "README.md").write_text("x")
    ds = load_dataset("folder", tmp_path)
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 0), (0, 0), (1, 0), (2, 0), (2, 0), (2, 0)]
    assert not ds.query and not ds.gallery
    msgs = "\n".join(ds.problems)
    assert "1 file(s) outside identity folders skipped, e.g. 'loose.jpg'" in msgs
    assert "non-image" in msgs and "README.md" in msgs
    assert any("camera 0" in n for n in ds.notes)


def test_identity_folders_splits_integer_names_and_camera_regex(tmp_path):
    for split, items in (("train", [("12", "cam3_a.jpg"), ("12", "cam5_b.jpg"), ("40", "cam3_c.jpg")]),
                         ("query", [("7", "cam3_q.jpg")]),
                         ("gallery", [("7", "cam10_g.jpg"), ("8", "cam5_h.jpg"), ("8", "nocam.jpg")])):
        for i, (ident, name) in enumerate(items):
            write_image(tmp_path / split / ident / name, seed=i)
    ds = load_dataset("folder", tmp_path, camera_pattern=r"cam(\d+)")
    # cameras 3, 5, 10 -> 0, 1, 2 (numeric order, not string order); integer folder names are the pids.
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 0), (0, 1), (1, 0)]
    assert [(r.pid, r.camid) for r in ds.query] == [(7, 0)]
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(7, 2), (8, 1)]
    assert "do not match camera_pattern" in "\n".join(ds.problems) and "nocam.jpg" in "\n".join(ds.problems)
    named = load_dataset("folder", tmp_path, camera_pattern=r"cam(?P<camid>\d+)_")
    assert named.gallery == ds.gallery


def test_identity_folders_errors(tmp_path):
    write_image(tmp_path / "query" / "1" / "a.jpg")
    with pytest.raises(DatasetError, match="missing gallery folder"):
        load_dataset("folder", tmp_path)
    with pytest.raises(DatasetError, match="not a valid regex"):
        load_dataset("folder", tmp_path, camera_pattern="cam(")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="train split is empty"):
        load_dataset("folder", tmp_path / "empty")


def test_csv_manifest_with_header_and_splits(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg", "q.jpg", "g1.jpg", "g2.jpg"):
        write_image(tmp_path / "imgs" / name)
    (tmp_path / "m.csv").write_text(
        "camid,path,pid,split\n"           # columns by name, any order
        "0,imgs/a.jpg,100,train\n1,imgs/b.jpg,100,\n2,imgs/c.jpg,5,train\n"
        "0,imgs/q.jpg,100,query\n,imgs/g1.jpg,100,gallery\n1,imgs/g2.jpg,-1,gallery\n"
        "0,imgs/gone.jpg,3,train\n0,imgs/a.jpg,x,train\n")
    ds = load_dataset("csv", tmp_path / "m.csv")
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 2), (1, 0), (1, 1)]
    assert [(r.pid, r.camid) for r in ds.query] == [(100, 0)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(100, -1), (-1, 1)]
    msgs = "\n".join(ds.problems)
    assert "1 listed file(s) not found" in msgs and "gone.jpg" in msgs
    assert "1 malformed row(s)" in msgs and "line 9" in msgs


def test_csv_manifest_without_header(tmp_path):
    write_image(tmp_path / "x.jpg")
    (tmp_path / "m.csv").write_text(f"{tmp_path / 'x.jpg'},4,2\nx.jpg,9,0\n")
    ds = load_dataset("csv", tmp_path / "m.csv")
    assert [(r.pid, r.camid) for r in ds.train] == [(0, 2), (1, 0)]
    (tmp_path / "bad.csv").write_text("file,identity\nx.jpg,1\n")
    with pytest.raises(DatasetError, match="bad.csv: line 1"):
        load_dataset("csv", tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(DatasetError, match="empty.csv: CSV manifest is empty"):
        load_dataset("csv", tmp_path / "empty.csv")
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("csv", tmp_path / "nope.csv")
