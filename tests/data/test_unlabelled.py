"""Unlabelled pools: recursive scan, ordered lists (text and pickled), keep_num / keep_ratio."""
from __future__ import annotations

import os
import pickle

import pytest

from reidkit.data.datasets import load_dataset
from reidkit.data.datasets.unlabelled import keep_head, load_paths, read_file_list
from reidkit.data.records import DatasetError

from data_fakes import write_image


def pool(tmp_path, n=6):
    names = [f"shard{i % 3}/sub/{i:03d}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        write_image(tmp_path / name, seed=i)
    (tmp_path / "shard0" / "meta.json").write_text("{}")
    return names


def test_recursive_scan_sorted_and_non_images_counted(tmp_path):
    names = pool(tmp_path)
    ds = load_dataset("unlabelled", tmp_path)
    assert [os.path.relpath(r.path, tmp_path) for r in ds.train] == sorted(names)
    assert {(r.pid, r.camid) for r in ds.train} == {(-1, -1)}
    assert "skipped 1 non-image file(s), e.g. 'meta.json'" in "\n".join(ds.problems)
    assert not ds.query and not ds.gallery


def test_scan_order_is_by_folder_then_name(tmp_path):
    for rel in ("b/1.jpg", "a/z.jpg", "a/b/0.jpg", "a.jpg", "c.png"):
        write_image(tmp_path / rel)
    paths = [os.path.relpath(p, tmp_path) for p in load_paths(tmp_path)]
    assert paths == ["a.jpg", "c.png", "a/z.jpg", "a/b/0.jpg", "b/1.jpg"]


def test_ordered_text_list_with_keep(tmp_path):
    names = pool(tmp_path)
    order = [names[4], names[0], names[5], names[2], names[1], names[3]]
    (tmp_path / "cfs.txt").write_text("# most relevant first\n" + "".join(f"{n}\t0.9\n" for n in order) + "\n")
    ds = load_dataset("unlabelled", tmp_path, file_list=tmp_path / "cfs.txt", keep_num=4)
    assert [os.path.relpath(r.path, tmp_path) for r in ds.train] == order[:4]
    ratio = load_dataset("unlabelled", tmp_path, file_list=tmp_path / "cfs.txt", keep_ratio=0.5)
    assert len(ratio.train) == 3
    # keep applies to the scan order too
    assert len(load_dataset("unlabelled", tmp_path, keep_ratio=1 / 3).train) == 2


def test_official_pickled_list_and_missing_entries(tmp_path):
    names = pool(tmp_path)
    with open(tmp_path / "CFS_list.pkl", "wb") as f:
        pickle.dump([names[3], "shard9/absent.jpg", names[1], "notes.txt"], f)
    ds = load_dataset("unlabelled", tmp_path, file_list=tmp_path / "CFS_list.pkl")
    assert [os.path.relpath(r.path, tmp_path) for r in ds.train] == [names[3], names[1]]
    msgs = "\n".join(ds.problems)
    assert "1 listed file(s) not found" in msgs and "absent.jpg" in msgs
    assert "non-image" in msgs and "notes.txt" in msgs
    unchecked = load_paths(tmp_path, file_list=tmp_path / "CFS_list.pkl", check_files=False)
    assert len(unchecked) == 3


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickled_list_never_runs_code(tmp_path):
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump([Evil()], f)
    with pytest.raises(DatasetError, match="evil.pkl: not a pickled list of file names"):
        read_file_list(tmp_path / "evil.pkl")
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")
    with open(tmp_path / "dict.pkl", "wb") as f:
        pickle.dump({"a": 1}, f)
    with pytest.raises(DatasetError, match="holds dict"):
        read_file_list(tmp_path / "dict.pkl")


def test_keep_head_rules():
    items = list(range(4180243 // 1000))  # 4180 items, LUPerson / 1000
    assert len(keep_head(items, keep_ratio=0.5)) == 2090
    # The official numbers: round(0.5 * 4,180,243) = 2,090,122 and round(0.6 * ...) = 2,508,146.
    class Big:
        def __len__(self):
            return 4180243

        def __getitem__(self, s):
            return range(4180243)[s]
    assert len(keep_head(Big(), keep_ratio=0.5)) == 2090122
    assert len(keep_head(Big(), keep_ratio=0.6)) == 2508146
    assert keep_head([1, 2, 3], keep_num=10) == [1, 2, 3]
    with pytest.raises(DatasetError, match="not both"):
        keep_head(items, keep_num=1, keep_ratio=0.5)
    with pytest.raises(DatasetError, match="keep_ratio must be in"):
        keep_head(items, keep_ratio=1.5)
    with pytest.raises(DatasetError, match="keep_num must be at least 1"):
        keep_head(items, keep_num=0)


def test_unlabelled_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("unlabelled", tmp_path / "nope")
    (tmp_path / "e").mkdir()
    with pytest.raises(DatasetError, match="train split is empty"):
        load_dataset("unlabelled", tmp_path / "e")
    (tmp_path / "l.txt").write_text("\n# nothing\n")
    with pytest.raises(DatasetError, match="l.txt: file list is empty"):
        load_dataset("unlabelled", tmp_path, file_list=tmp_path / "l.txt")
    with pytest.raises(DatasetError, match="file list not found"):
        load_dataset("unlabelled", tmp_path, file_list=tmp_path / "none.txt")


def test_symlink_loop_is_listed_once_and_reported(tmp_path):
    """A link to a parent folder used to list the pool again per level, then die in ELOOP."""
    names = pool(tmp_path)
    os.symlink(tmp_path, tmp_path / "shard1" / "sub" / "back_to_top")
    os.symlink("self_loop", tmp_path / "shard2" / "self_loop")
    ds = load_dataset("unlabelled", tmp_path)
    assert [os.path.relpath(r.path, tmp_path) for r in ds.train] == sorted(names)
    msgs = "\n".join(ds.problems)
    assert "1 symlinked folder(s) already listed" in msgs and "back_to_top" in msgs


def test_dangling_symlinks_are_reported(tmp_path):
    names = pool(tmp_path)
    os.symlink(tmp_path / "gone.jpg", tmp_path / "shard0" / "sub" / "dead.jpg")
    os.symlink(tmp_path / "gone_dir", tmp_path / "shard0" / "dead_dir")
    ds = load_dataset("unlabelled", tmp_path)
    assert len(ds.train) == len(names)
    msgs = "\n".join(ds.problems)
    assert "2 dangling symlink(s)" in msgs and "gone" in msgs
