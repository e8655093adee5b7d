"""``reidkit index build|add|info`` and ``reidkit search`` through the real CLI entry point."""
from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from reidkit.cli.main import app
from reidkit.evaluation.featurefile import FeatureSet, save_features
from reidkit.retrieval.index import GalleryIndex

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"REIDKIT_PROGRESS": "0", "COLUMNS": "200"})


def test_build_add_info_search(tmp_path, features, brute_force):
    feats, pids, camids = features
    paths = [f"/data/market/bounding_box_test/{i:05d}.jpg" for i in range(len(feats))]
    save_features(FeatureSet(feats[:200], pids[:200], camids[:200], paths[:200]), tmp_path / "g1.safetensors")
    save_features(FeatureSet(feats[200:], pids[200:], camids[200:], paths[200:]), tmp_path / "g2.npz")
    save_features(FeatureSet(feats[::30] + 0.01, pids[::30], camids[::30]), tmp_path / "q.npz")
    ix = tmp_path / "ix"

    r = run("index", "build", tmp_path / "g1.safetensors", "--out", ix)
    assert r.exit_code == 0, r.output
    assert "flat" in r.output and "200" in r.output
    r = run("index", "build", tmp_path / "g1.safetensors", "--out", ix)
    assert r.exit_code == 2 and "already exists" in " ".join(r.output.split())
    r = run("index", "add", ix, tmp_path / "g2.npz")
    assert r.exit_code == 0 and "240 in total" in " ".join(r.output.split()), r.output
    info = json.loads(run("index", "info", ix, "--json").output)
    assert info["count"] == 240 and info["roots"] == ["/data/market/bounding_box_test"]

    r = run("search", ix, tmp_path / "q.npz", "-k", "5", "--json")
    assert r.exit_code == 0, r.output
    results = json.loads(r.output)
    ref_ids, ref_scores = brute_force(feats, feats[::30] + 0.01, 5)
    assert [[x["id"] for x in q["results"]] for q in results] == ref_ids.tolist()
    np.testing.assert_allclose([[x["score"] for x in q["results"]] for q in results], ref_scores, atol=1e-5)
    assert results[1]["pid"] == pids[30] and results[1]["results"][0]["path"] == paths[30]

    table = run("search", ix, tmp_path / "q.npz", "-k", "3", "--max-tables", "1", "--out", tmp_path / "r.json")
    assert table.exit_code == 0 and "rank" in table.output and "more queries not shown" in table.output
    assert len(json.loads((tmp_path / "r.json").read_text())) == len(results)


def test_kind_flag_and_rebuild_with_force(tmp_path, clustered, brute_force):
    feats, pids, camids = clustered(150, 8, 16, seed=3)
    save_features(FeatureSet(feats, pids, camids), tmp_path / "g.npz")
    r = run("index", "build", tmp_path / "g.npz", "--out", tmp_path / "ix", "--kind", "hnsw", "--ef-search", "64")
    assert r.exit_code == 0, r.output
    r = run("index", "build", tmp_path / "g.npz", "--out", tmp_path / "ix", "--kind", "ivfpq", "--refine", "sq8",
            "--nprobe", "8", "--force")
    assert r.exit_code == 0, r.output
    idx = GalleryIndex.load(tmp_path / "ix")
    assert idx.kind == "ivfpq" and idx.params["refine"] == "sq8" and idx.params["nprobe"] == 8
    assert sorted(p.name for p in (tmp_path / "ix").iterdir()) == ["index-1.faiss", "items-1.npz", "meta.json"]
    # re-scoring with 8-bit copies recovers most of what 1-byte PQ codes lose (plain: ~0.5 here)
    q = feats[::7] + 0.01
    ref, _ = brute_force(feats, q, 10)
    ids = idx.search(q, 10).ids
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref)]) >= 0.75


def test_clear_errors_without_traceback(tmp_path, features):
    feats, pids, camids = features
    save_features(FeatureSet(feats, pids, camids), tmp_path / "g.npz")
    save_features(FeatureSet(np.ones((2, 8)), [1, 2], [0, 0]), tmp_path / "small.npz")
    run("index", "build", tmp_path / "g.npz", "--out", tmp_path / "ix")
    cases = [
        (("index", "info", tmp_path / "nothing"), "index folder not found"),
        (("index", "add", tmp_path / "ix", tmp_path / "small.npz"), "has dim 32, " + str(tmp_path / "small.npz") + " have dim 8"),
        (("search", tmp_path / "ix", tmp_path / "small.npz"), "has dim 32"),
        (("search", tmp_path / "ix", tmp_path / "g.npz", "-k", "0"), "k must be >= 1"),
        (("index", "build", tmp_path / "g.npz", "--out", tmp_path / "i2", "--kind", "lsh"), "unknown index kind"),
        (("index", "build", tmp_path / "g.npz", "--out", tmp_path / "i3", "--nprobe", "4"), "unknown flat index parameter"),
        (("index", "build", tmp_path / "g.npz", "--out", tmp_path / "i4", "--kind", "ivfpq"), "at least 1000"),
        (("search", tmp_path / "ix", tmp_path / "readme.txt"), "not found"),
    ]
    (tmp_path / "notes.txt").write_text("x")
    cases.append((("search", tmp_path / "ix", tmp_path / "notes.txt"), "neither a feature file"))
    for args, message in cases:
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert message in " ".join(r.output.split()), (args, r.output)
        assert "Traceback" not in r.output


def test_image_queries_need_a_model(tmp_path, features, image_gallery):
    feats, pids, camids = features
    save_features(FeatureSet(feats, pids, camids), tmp_path / "g.npz")
    run("index", "build", tmp_path / "g.npz", "--out", tmp_path / "ix")
    r = run("search", tmp_path / "ix", image_gallery[1][0])
    assert r.exit_code == 2 and "need a model" in " ".join(r.output.split())


def test_build_from_images_and_search_with_an_image(tmp_path, image_gallery, tiny_model):
    root, paths = image_gallery
    ix = tmp_path / "ix"
    r = run("index", "build", root, "--out", ix, "--model", tiny_model)
    assert r.exit_code == 0, r.output
    idx = GalleryIndex.load(ix)
    assert len(idx) == 12 and idx.roots == [root] and idx.model["feat_dim"] == 64
    assert sorted(set(idx.items.pids.tolist())) == [1, 2, 3, 4]  # parsed from the Market-style names
    assert sorted(set(idx.items.camids.tolist())) == [0, 1, 2]
    # the model recorded in the index embeds the query image: it finds itself first
    r = run("search", ix, paths[5], "-k", "3", "--json")
    assert r.exit_code == 0, r.output
    top = json.loads(r.output)[0]["results"][0]
    assert top["path"] == paths[5] and top["score"] > 0.9999
    # a folder of query images, and adding images to the index
    r = run("index", "add", ix, paths[0])
    assert r.exit_code == 0 and len(GalleryIndex.load(ix)) == 13, r.output
    r = run("search", ix, root, "-k", "2", "--json")
    assert r.exit_code == 0 and len(json.loads(r.output)) == 12


def test_search_time_knobs_from_the_cli(tmp_path, clustered):
    feats, pids, camids = clustered(150, 8, 16, seed=3)
    save_features(FeatureSet(feats, pids, camids), tmp_path / "g.npz")
    save_features(FeatureSet(feats[::50], pids[::50], camids[::50]), tmp_path / "q.npz")
    r = run("index", "build", tmp_path / "g.npz", "--out", tmp_path / "ix", "--kind", "ivfpq", "--nlist", "20",
            "--k-factor", "8")
    assert r.exit_code == 0, r.output
    idx = GalleryIndex.load(tmp_path / "ix")
    assert idx.params["nlist"] == 20 and idx.params["nprobe"] == 7 and idx.params["k_factor"] == 8
    r = run("search", tmp_path / "ix", tmp_path / "q.npz", "-k", "3", "--json", "--nprobe", "20")
    assert r.exit_code == 0, r.output
    # every list probed and re-scored: the query's own vector comes first
    assert [q["results"][0]["id"] for q in json.loads(r.output)] == list(range(0, len(feats), 50))
    r = run("search", tmp_path / "ix", tmp_path / "q.npz", "--ef-search", "64")
    assert r.exit_code == 2 and "do not apply to a ivfpq index" in " ".join(r.output.split())
    assert GalleryIndex.load(tmp_path / "ix").params["nprobe"] == 7  # a search does not rewrite the index
