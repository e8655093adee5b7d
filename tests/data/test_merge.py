"""Merging datasets: pid / camera offsets, and the official `mm` set."""
from __future__ import annotations

import pytest

from reidkit.data.datasets import load_dataset, merge_datasets
from reidkit.data.records import DatasetError, ReIDDataset, Record

from data_fakes import market_name as mn
from data_fakes import market_tree
from test_msmt17 import msmt_tree


def test_merge_offsets_by_hand():
    a = ReIDDataset("a", train=[Record("a1", 0, 0), Record("a2", 1, 2)],
                    query=[Record("aq", 5, 1)], gallery=[Record("ag", 5, 0)])       # 2 ids, 3 cameras
    b = ReIDDataset("b", train=[Record("b1", 10, 0), Record("b2", 20, 1), Record("b3", 20, -1)],
                    query=[Record("bq", 7, 1)], gallery=[Record("bg", 7, 0), Record("bj", 0, 1)])
    m = merge_datasets([a, b])
    assert m.train == [Record("a1", 0, 0), Record("a2", 1, 2),
                       Record("b1", 2, 3), Record("b2", 3, 4), Record("b3", 3, -1)]
    # test split from the last dataset: its own pids, its camera offset (3).
    assert m.query == [Record("bq", 7, 4)] and m.gallery == [Record("bg", 7, 3), Record("bj", 0, 4)]
    first = merge_datasets([a, b], test_from=0)
    assert first.query == [Record("aq", 5, 1)]
    assert m.name == "a+b"
    with pytest.raises(DatasetError, match="test_from=2"):
        merge_datasets([a, b], test_from=2)
    with pytest.raises(DatasetError, match="no datasets"):
        merge_datasets([])


def test_mm_official_set(tmp_path):
    # MSMT17 with 3 train ids over 15 cameras (cameras 1..15 seen), Market with 2 train ids.
    msmt_tree(tmp_path / "MSMT17_V1", train=[(0, 1, 0), (1, 15, 0), (2, 3, 0)], val=[(2, 4, 1)],
              query=[(0, 2, 0)], gallery=[(0, 3, 0)])
    market_tree(tmp_path / "market1501", train=[mn(5, 1), mn(9, 6)], query=[mn(5, 2)],
                gallery=[mn(5, 3), mn(0, 1)])
    ds = load_dataset("mm", tmp_path)
    assert ds.name == "mm"
    msmt_part = [r for r in ds.train if "MSMT17" in r.path]
    market_part = [r for r in ds.train if "market1501" in r.path]
    assert sorted(r.pid for r in msmt_part) == [0, 1, 2]          # list_train only by default
    assert sorted((r.pid, r.camid) for r in market_part) == [(3, 15), (4, 20)]
    assert [(r.pid, r.camid) for r in ds.query] == [(5, 16)]      # Market test split, cameras +15
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(0, 15), (5, 17)]
    assert len(load_dataset("mm", tmp_path, combine_val=True).train) == 6
