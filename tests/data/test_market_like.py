"""Market-1501, DukeMTMC-reID and CUHK03-NP readers on tiny fake folders."""
from __future__ import annotations

import pytest

from reidkit.data.datasets import load_dataset
from reidkit.data.records import DatasetError

from data_fakes import market_name as mn
from data_fakes import market_tree, write_image


def standard_market(base):
    return market_tree(
        base,
        train=[mn(2, 1, 0), mn(2, 3, 1), mn(7, 2, 0), mn(10, 6, 0), mn(0, 1, 9)],
        query=[mn(2, 4, 0), mn(7, 1, 0), mn(-1, 1, 3)],
        gallery=[mn(2, 1, 5), mn(7, 5, 0), mn(0, 2, 0), mn(0, 3, 1), mn(-1, 2, 0), mn(-1, 3, 1)],
    )


@pytest.mark.parametrize("sub", ["", "Market-1501-v15.09.15", "market1501/Market-1501-v15.09.15"])
def test_market_layouts_and_conventions(tmp_path, sub):
    standard_market(tmp_path / sub if sub else tmp_path)
    ds = load_dataset("market1501", tmp_path)
    # train relabelled in sorted pid order: 2->0, 7->1, 10->2; the pid-0 distractor is not a train id.
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 0), (0, 2), (1, 1), (2, 5)]
    # query keeps original pids; junk dropped.
    assert sorted((r.pid, r.camid) for r in ds.query) == [(2, 3), (7, 0)]
    # gallery keeps distractors (pid 0) and drops junk (pid -1).
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(0, 1), (0, 2), (2, 0), (7, 4)]
    assert ds.problems == []
    assert any("dropped 2 junk" in n for n in ds.notes)
    assert any("dropped 1 junk" in n for n in ds.notes)
    assert ds.statistics() == [("train", 3, 4, 4), ("query", 2, 2, 2), ("gallery", 3, 4, 4)]
    assert all(r.path.endswith(".jpg") and "_c" in r.path for r in ds.train)


def test_market_paths_are_deterministic(tmp_path):
    standard_market(tmp_path)
    a, b = load_dataset("market1501", tmp_path), load_dataset("Market-1501", tmp_path)
    assert a.train == b.train and a.gallery == b.gallery
    assert [r.path for r in a.gallery] == sorted(r.path for r in a.gallery)


def test_market_bad_names_and_non_images_are_reported(tmp_path):
    standard_market(tmp_path)
    write_image(tmp_path / "bounding_box_test" / "holiday.jpg")
    write_image(tmp_path / "bounding_box_test" / "c1_0001.jpg", seed=3)
    (tmp_path / "bounding_box_test" / "Thumbs.db").write_bytes(b"\0\1")
    (tmp_path / "query" / "notes.txt").write_text("x")
    ds = load_dataset("market1501", tmp_path)
    msgs = "\n".join(ds.problems)
    assert "2 file name(s) do not match" in msgs and "'c1_0001.jpg'" in msgs
    assert str(tmp_path / "bounding_box_test") in msgs
    assert "skipped 1 non-image file(s), e.g. 'Thumbs.db'" in msgs
    assert "e.g. 'notes.txt'" in msgs
    assert len(ds.gallery) == 4  # unchanged


def test_market_missing_split_folder_is_an_error_naming_it(tmp_path):
    market_tree(tmp_path, train=[mn(1, 1)], gallery=[mn(1, 2)])
    (tmp_path / "query").rmdir()
    with pytest.raises(DatasetError) as e:
        load_dataset("market1501", tmp_path)
    assert str(tmp_path / "query") in str(e.value) and "missing query folder" in str(e.value)
    ds = load_dataset("market1501", tmp_path, strict=False)  # what `datasets check` does
    assert ds.errors and len(ds.train) == 1 and len(ds.gallery) == 1


def test_market_empty_split_and_all_names_wrong(tmp_path):
    market_tree(tmp_path, train=["a.jpg", "b.jpg"], query=[mn(1, 1)], gallery=[])
    with pytest.raises(DatasetError) as e:
        load_dataset("market1501", tmp_path)
    msg = str(e.value)
    assert "train split is empty" in msg and "gallery split is empty" in msg
    assert str(tmp_path / "bounding_box_test") in msg


def test_market_root_problems(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("market1501", tmp_path / "nope")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset("market1501", tmp_path / "x.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no market1501 layout found"):
        load_dataset("market1501", tmp_path / "empty")


def test_market_extra_gallery(tmp_path):
    standard_market(tmp_path)
    write_image(tmp_path / "images" / "0000_c1s1_900000_01.jpg")
    write_image(tmp_path / "images" / "sub" / "distractor_17.jpg", seed=1)
    plain = load_dataset("market1501", tmp_path)
    ds = load_dataset("market1501", tmp_path, extra_gallery=True)
    assert len(ds.gallery) == len(plain.gallery) + 2
    extra = ds.gallery[len(plain.gallery):]
    assert sorted((r.pid, r.camid) for r in extra) == [(0, -1), (0, 0)]
    other = standard_market(tmp_path / "no_extra")
    with pytest.raises(DatasetError, match="missing extra gallery folder"):
        load_dataset("market1501", other, extra_gallery=True)


def test_unknown_format_and_option(tmp_path):
    standard_market(tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset format 'viper'"):
        load_dataset("viper", tmp_path)
    with pytest.raises(DatasetError, match="does not take option"):
        load_dataset("market1501", tmp_path, keep_num=3)


def test_dukemtmc(tmp_path):
    market_tree(tmp_path / "DukeMTMC-reID", train=["0001_c2_f0046182.jpg", "0001_c8_f0046999.jpg",
                                                   "0005_c1_f0000001.jpg"],
                query=["0003_c1_f0000002.jpg"], gallery=["0003_c7_f0000009.jpg", "0004_c2_f1.jpg"])
    ds = load_dataset("dukemtmc", tmp_path)
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 1), (0, 7), (1, 0)]
    assert [(r.pid, r.camid) for r in ds.query] == [(3, 0)]
    assert ds.name == "dukemtmc"


@pytest.mark.parametrize("variant", ["detected", "labeled"])
def test_cuhk03_np_variants(tmp_path, variant):
    for v, pids in (("detected", (1, 2)), ("labeled", (5, 6, 7))):
        market_tree(tmp_path / "cuhk03-np" / v, train=[f"{p:04d}_c1_{i}.png" for i, p in enumerate(pids)],
                    query=[f"{p:04d}_c1_1.png" for p in pids], gallery=[f"{p:04d}_c2_1.png" for p in pids],
                    ext=".png")
    ds = load_dataset("cuhk03", tmp_path, variant=variant)
    expect = (1, 2) if variant == "detected" else (5, 6, 7)
    assert sorted(r.pid for r in ds.query) == list(expect)
    assert {r.camid for r in ds.gallery} == {1}
    # pointing straight at the variant folder works too
    direct = load_dataset("cuhk03", tmp_path / "cuhk03-np" / variant)
    assert direct.query == ds.query


def test_cuhk03_missing_variant_is_not_silently_replaced(tmp_path):
    market_tree(tmp_path / "cuhk03-np" / "labeled", train=[mn(1, 1)], query=[mn(1, 1)], gallery=[mn(1, 2)])
    with pytest.raises(DatasetError, match="no cuhk03-np \\(detected\\) layout found"):
        load_dataset("cuhk03", tmp_path, variant="detected")
    with pytest.raises(DatasetError, match="variant must be"):
        load_dataset("cuhk03", tmp_path, variant="both")


def test_market_layout_in_any_single_subfolder_and_ambiguity(tmp_path):
    standard_market(tmp_path / "city_a")
    assert len(load_dataset("market1501", tmp_path).train) == 4
    standard_market(tmp_path / "city_b")
    with pytest.raises(DatasetError, match="several dataset folders found \\(city_a, city_b\\)"):
        load_dataset("market1501", tmp_path)
    assert len(load_dataset("market1501", tmp_path / "city_b").train) == 4
