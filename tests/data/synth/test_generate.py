"""The synthetic benchmark: layout, Market-1501 conventions, pool labels, determinism, errors."""
from __future__ import annotations

import csv
import hashlib
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.config import ConfigError
from reidkit.data.synth import (RELEVANCE_CSV, SPLIT_DIRS, SynthConfig, SynthError, generate,
                                read_pool_relevance)

NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
TINY = dict(domains=2, train_ids=6, test_ids=5, cameras=4, distractors=4, junk=3, pool_size=40,
            pool_relevant_ratio=0.25)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return generate(SynthConfig(**TINY), root, progress=False)


def _parse(folder: Path) -> list[tuple[int, int]]:
    out = []
    for p in sorted(folder.iterdir()):
        m = NAME.match(p.name)
        assert m, f"not a Market-1501 name: {p.name}"
        out.append((int(m.group(1)), int(m.group(2)) - 1))
    return out


def test_market_layout_and_protocol_invariants(bench):
    assert [p.name for p in bench.domains] == ["city_a", "city_b"]
    for dom in bench.domains:
        train = _parse(dom / SPLIT_DIRS["train"])
        query = _parse(dom / SPLIT_DIRS["query"])
        gallery = _parse(dom / SPLIT_DIRS["gallery"])
        train_ids = {p for p, _ in train}
        test_ids = {p for p, _ in query}
        assert len(train_ids) == 6 and len(test_ids) == 5 and not train_ids & test_ids
        assert 0 not in train_ids and -1 not in train_ids
        assert sum(p == 0 for p, _ in gallery) == 4 and sum(p == -1 for p, _ in gallery) == 3
        # every query has a correct match in another camera (else the protocol would skip it)
        gal = defaultdict(set)
        for p, c in gallery:
            gal[p].add(c)
        for p, c in query:
            assert gal[p] - {c}, f"query pid {p} cam {c} has no cross-camera match"
        # each test id is in 1..queries_per_id queries, at most one per camera
        per_id = defaultdict(list)
        for p, c in query:
            per_id[p].append(c)
        assert all(1 <= len(cs) <= 2 and len(set(cs)) == len(cs) for cs in per_id.values())
        # each training id is seen by at least min_cameras_per_id cameras
        cams = defaultdict(set)
        for p, c in train:
            cams[p].add(c)
        assert all(len(cs) >= 2 for cs in cams.values())


def test_images_are_rgb_of_the_requested_size(bench):
    files = sorted((bench.domains[0] / "query").glob("*.jpg"))[:5] + sorted(bench.pool.glob("*.jpg"))[:5]
    for f in files:
        with Image.open(f) as im:
            assert im.mode == "RGB" and im.size == (64, 128)


def test_pool_relevance_file_matches_pool(bench):
    with open(bench.relevance_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and sum(r["relevant"] == "1" for r in rows) == 10
    assert {r["kind"] for r in rows if r["relevant"] == "0"} <= {"scene", "object", "offstyle"}
    assert all(r["kind"] == "person" for r in rows if r["relevant"] == "1")
    on_disk = {str(p.resolve()) for p in bench.pool.glob("*.jpg")}
    rel = read_pool_relevance(bench.root)
    assert set(rel) == on_disk and sum(rel.values()) == 10


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, bench):
    cfg = dict(TINY, domains=1, pool_size=12)
    a = generate(SynthConfig(**cfg), tmp_path / "a", progress=False)
    b = generate(SynthConfig(**cfg, workers=2), tmp_path / "b", progress=False)
    c = generate(SynthConfig(**dict(cfg, seed=1)), tmp_path / "c", progress=False)
    da, db, dc = _digest(a.root), _digest(b.root), _digest(c.root)
    assert da == db
    assert da != dc
    # the city_a of the 2-domain benchmark is the same city: domains do not disturb each other
    assert {k: v for k, v in _digest(bench.root).items() if k.startswith("city_a/")} == \
        {k: v for k, v in da.items() if k.startswith("city_a/")}


def test_identities_are_consistent_across_images_and_differ_between_ids(bench):
    """Same id in the same camera looks more alike than two different ids (mean colour)."""
    folder = bench.domains[0] / SPLIT_DIRS["train"]
    by_id = defaultdict(list)
    for p in sorted(folder.glob("*.jpg")):
        with Image.open(p) as im:
            arr = np.asarray(im, np.float32)
        by_id[p.name[:4]].append(arr[30:70].reshape(-1, 3).mean(0))  # torso rows
    means = {k: np.mean(v, 0) for k, v in by_id.items()}
    within = np.mean([np.linalg.norm(x - means[k]) for k, v in by_id.items() for x in v])
    keys = sorted(means)
    between = np.mean([np.linalg.norm(means[a] - means[b]) for a in keys for b in keys if a < b])
    assert within < between


def test_refuses_to_overwrite_without_flag(bench):
    with pytest.raises(SynthError, match="already holds"):
        generate(SynthConfig(**TINY), bench.root, progress=False)


@pytest.mark.parametrize("field,value", [("cameras", 12), ("domains", 0), ("pool_relevant_ratio", 1.5),
                                         ("min_cameras_per_id", 9)])
def test_bad_config_names_the_field(tmp_path, field, value):
    with pytest.raises(ConfigError, match=f"SynthConfig.{field}"):
        generate(SynthConfig(**{**TINY, field: value}), tmp_path, progress=False)


def test_market_reader_parses_the_benchmark(bench):
    from reidkit.data.datasets import load_dataset

    ds = load_dataset("market1501", bench.domains[1])
    stats = bench.stats["city_b"]
    assert len(ds.train) == stats["train"]["images"] and len(ds.query) == stats["query"]["images"]
    assert len({r.pid for r in ds.train}) == 6 and {r.pid for r in ds.train} == set(range(6))
    assert {r.camid for r in ds.query} <= set(range(4))
    gallery_pids = {r.pid for r in ds.gallery}
    assert 0 in gallery_pids  # distractors are kept in the gallery
    assert not ds.problems or all("junk" in p or "-1" in p for p in ds.problems)


def test_unlabelled_reader_sees_only_the_pool_images(bench):
    from reidkit.data.datasets import load_dataset

    pool = load_dataset("unlabelled", bench.pool)
    assert len(pool.train) == 40
    assert set(read_pool_relevance(bench.root / RELEVANCE_CSV)) == {str(Path(r.path).resolve()) for r in pool.train}


def test_cli_prints_statistics_and_clear_errors(tmp_path):
    from typer.testing import CliRunner

    from reidkit.cli.main import app

    out = tmp_path / "cli"
    args = ["synth", str(out), "--ids", "3", "--cameras", "3", "--domains", "1", "--distractors", "2",
            "--junk", "1", "--pool-size", "6", "--height", "256", "--width", "128"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "city_a" in res.output and "images/s" in res.output and "pool: 6 images" in res.output
    with Image.open(next((out / "city_a" / "query").glob("*.jpg"))) as im:
        assert im.size == (128, 256)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output and "Traceback" not in again.output
    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--cameras", "12"])
    assert bad.exit_code == 2 and "SynthConfig.cameras" in bad.output
