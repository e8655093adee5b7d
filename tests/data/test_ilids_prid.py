"""iLIDS-VID and PRID2011 readers: layouts, the 10 seeded splits saved as JSON, split_id, bad input."""
from __future__ import annotations

import json
import os

import pytest

from reidkit.data.datasets import load_dataset
from reidkit.data.datasets.video_common import make_splits
from reidkit.data.records import DatasetError

from video_fakes import ilids_tree, prid_tree

ILIDS = {1: (3, 2), 2: (2, 2), 4: (2, 3), 7: (2, 2), 9: (11, 2), 12: (2, 2), 13: (0, 2)}


def test_make_splits_is_deterministic_and_halves():
    names = [f"person{i:03d}" for i in range(1, 21)]
    a, b = make_splits(names, 0), make_splits(list(reversed(names)), 0)
    assert a == b and a != make_splits(names, 1) and len(a) == 10
    for s in a:
        assert len(s["train"]) == 10 and sorted(s["train"] + s["test"]) == names
    assert len({tuple(s["train"]) for s in a}) == 10          # ten different splits


def test_ilids_vid_protocol_and_saved_splits(tmp_path):
    base = ilids_tree(tmp_path / "i-LIDS-VID" / "sequences", ILIDS)
    ds = load_dataset("ilids-vid", tmp_path, split_id=3)
    saved = base / "splits_ilids-vid_seed0.json"
    data = json.loads(saved.read_text())
    assert data["seed"] == 0 and data["ids"] == 6 and len(data["splits"]) == 10
    split = data["splits"][3]
    test_pids = [int(n[6:]) for n in split["test"]]
    assert [t.pid for t in ds.query] == test_pids and [t.pid for t in ds.gallery] == test_pids
    assert {t.camid for t in ds.query} == {0} and {t.camid for t in ds.gallery} == {1}
    assert len(ds.train) == 2 * len(split["train"]) and {t.pid for t in ds.train} == set(range(3))
    assert not ds.problems                                    # person013 is in cam2 only: not used, not a problem
    nine = next(t for t in ds.train + ds.query if len(t.frames) == 11)    # frames in numeric order
    assert [os.path.basename(p) for p in nine.frames][:3] == ["cam1_person009_00005.png",
                                                             "cam1_person009_00012.png", "cam1_person009_00019.png"]
    # the saved file is read back (a different seed would not be used silently: its own file name)
    split_text = saved.read_text()
    again = load_dataset("ilids-vid", tmp_path, split_id=3)
    assert saved.read_text() == split_text and [t.frames for t in again.query] == [t.frames for t in ds.query]
    assert any("splits read from" in n for n in again.notes)
    other = load_dataset("ilids-vid", tmp_path, split_id=3, seed=5)
    assert (base / "splits_ilids-vid_seed5.json").is_file() and other.notes != again.notes


def test_split_file_in_the_bare_list_form_and_its_errors(tmp_path):
    ilids_tree(tmp_path, ILIDS)
    f = tmp_path / "mine.json"
    f.write_text(json.dumps([{"train": ["person001", "person002", "person004"],
                              "test": ["person007", "person009", "person012"]}]))
    ds = load_dataset("ilids-vid", tmp_path, split_file=str(f))
    assert [t.pid for t in ds.query] == [7, 9, 12]
    with pytest.raises(DatasetError, match="has 1 split.s.; split_id 4 does not exist"):
        load_dataset("ilids-vid", tmp_path, split_file=str(f), split_id=4)
    f.write_text(json.dumps([{"train": ["person001", "person099"], "test": ["person001"]}]))
    with pytest.raises(DatasetError) as e:
        load_dataset("ilids-vid", tmp_path, split_file=str(f))
    assert "1 id(s) not found in both cameras, e.g. ['person099']" in str(e.value)
    assert "1 id(s) in both train and test" in str(e.value)
    f.write_text(json.dumps({"splits": [{"train": ["person001"], "test": ["person002"]}]}))
    with pytest.raises(DatasetError, match=r"split 0 leaves out 4 of the 6 usable id\(s\), e.g. \['person004'"):
        load_dataset("ilids-vid", tmp_path, split_file=str(f))
    f.write_text("{not json")
    with pytest.raises(DatasetError, match="not a readable splits JSON"):
        load_dataset("ilids-vid", tmp_path, split_file=str(f))
    with pytest.raises(DatasetError, match="split_id must be 0..9"):
        load_dataset("ilids-vid", tmp_path, split_id=10)


def test_empty_person_folder_is_a_counted_error(tmp_path):
    ilids_tree(tmp_path, ILIDS)
    (tmp_path / "cam2" / "person020").mkdir()
    (tmp_path / "cam1" / "person020").mkdir()
    (tmp_path / "cam1" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="2 empty tracklet folder"):
        load_dataset("ilids-vid", tmp_path)
    ds = load_dataset("ilids-vid", tmp_path, strict=False)     # the rest stays usable ...
    assert ds.errors and len(ds.train) == 6 and len(ds.query) == 3
    assert any("outside person folders" in p for p in ds.problems)
    assert not list(tmp_path.glob("*.json"))                   # ... but no split file is saved from it
    assert any("not saved (the folders have errors)" in n for n in ds.notes)


def test_prid2011_shared_ids_and_min_frames(tmp_path):
    persons = {1: (30, 25), 2: (22, 40), 3: (21, 30), 4: (50, 22), 5: (30, 30), 201: (30, 30)}
    base = prid_tree(tmp_path / "prid_2011" / "multi_shot", persons)
    for pid in (6, 7):
        prid_tree(base, {pid: (0, 25)})                        # camera B only
    ds = load_dataset("prid2011", tmp_path)
    # person 3 has 21 frames in camera A (not more than 21): out; person 201 is another person in B
    ids = sorted({t.pid for t in ds.query} | {t.pid for t in ds.train})
    assert len(ids) == 4 and ds.train[0].pid == 0
    assert sorted(t.pid for t in ds.query) == sorted(t.pid for t in ds.gallery)
    assert not {t.pid for t in ds.query} & {3, 201}
    assert any("4 ids in both cameras with >= 22 frames each (1 with fewer left out)" in n for n in ds.notes)
    saved = json.loads((base / "splits_prid2011_seed0.json").read_text())
    assert sorted(saved["splits"][0]["train"] + saved["splits"][0]["test"]) == \
        ["person_0001", "person_0002", "person_0004", "person_0005"]
    assert [os.path.basename(p) for p in ds.query[0].frames][:2] == ["0001.png", "0002.png"]
    ds = load_dataset("prid", tmp_path, min_frames=1, split_file=str(tmp_path / "s.json"))
    assert len(ds.query) + len(ds.train) // 2 == 5


def test_prid2011_missing_camera(tmp_path):
    prid_tree(tmp_path, {1: (3, 0), 2: (4, 0)})
    with pytest.raises(DatasetError, match="missing cam_b folder"):
        load_dataset("prid2011", tmp_path)
