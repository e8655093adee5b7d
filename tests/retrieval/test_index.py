"""The faiss gallery index against a brute-force ranking, and its files on disk."""
from __future__ import annotations

import json

import numpy as np
import pytest

from reidkit.retrieval.index import GalleryIndex, IndexFileError, choose_kind


def recall_at(ids: np.ndarray, ref: np.ndarray) -> float:
    k = ref.shape[1]
    return float(np.mean([len(set(a[:k]) & set(b)) / k for a, b in zip(ids, ref)]))


def test_flat_matches_brute_force(features, brute_force):
    feats, pids, camids = features
    queries = feats[::17] + 0.05
    idx = GalleryIndex.build(feats, pids, camids, kind="flat")
    res = idx.search(queries, k=10)
    ref_ids, ref_scores = brute_force(feats, queries, 10)
    np.testing.assert_array_equal(res.ids, ref_ids)
    np.testing.assert_allclose(res.scores, ref_scores, atol=1e-5)
    assert (np.diff(res.scores, axis=1) <= 1e-7).all()  # descending


def test_scores_are_cosines_scale_invariant(features):
    feats, pids, camids = features
    idx = GalleryIndex.build(feats * 37.0, pids, camids, kind="flat")
    res = idx.search(feats[:3] * 0.01, k=1)
    np.testing.assert_array_equal(res.ids[:, 0], [0, 1, 2])
    np.testing.assert_allclose(res.scores[:, 0], 1.0, atol=1e-5)


def test_hnsw_recall_against_brute_force(features, brute_force):
    feats, pids, camids = features
    queries = feats[::7] + 0.05
    res = GalleryIndex.build(feats, pids, camids, kind="hnsw").search(queries, k=10)
    ref_ids, _ = brute_force(feats, queries, 10)
    assert recall_at(res.ids, ref_ids) >= 0.98


def test_ivfpq_recall_and_top1_on_clustered_data(clustered, brute_force):
    feats, pids, camids = clustered(200, 8, 32, noise=0.4, seed=1)
    queries = feats[::40] + 0.02
    idx = GalleryIndex.build(feats, pids, camids, kind="ivfpq", params={"nprobe": 16, "refine": "none"})
    res = idx.search(queries, k=8)
    ref_ids, _ = brute_force(feats, queries, 8)
    # same-identity neighbours are well separated here, so even 4-byte codes find most of them
    assert recall_at(res.ids, ref_ids) >= 0.7
    assert np.mean(pids[res.ids[:, 0]] == pids[::40]) >= 0.95
    assert idx.params["nlist"] >= 1 and idx.params["m"] * 8 <= 32 * 8


def test_ivfpq_needs_enough_vectors(features):
    with pytest.raises(IndexFileError, match="at least 1000"):
        GalleryIndex.build(features[0], kind="ivfpq")


def test_auto_kind_by_size():
    assert choose_kind(50_000) == "flat"
    assert choose_kind(500_000) == "ivfpq"
    assert choose_kind(5_000_000) == "ivfpq"
    with pytest.raises(IndexFileError, match="unknown index kind"):
        GalleryIndex.build(np.ones((3, 4)), kind="annoy")


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_incremental_add_equals_one_build(features, tmp_path, kind):
    feats, pids, camids = features
    whole = GalleryIndex.build(feats, pids, camids, kind=kind)
    part = GalleryIndex.build(feats[:100], pids[:100], camids[:100], kind=kind)
    part.save(tmp_path / "ix")
    grown = GalleryIndex.load(tmp_path / "ix")
    grown.add(feats[100:], pids[100:], camids[100:])
    grown.save(tmp_path / "ix")
    grown = GalleryIndex.load(tmp_path / "ix")
    assert len(grown) == len(feats) and grown.generation == 1
    np.testing.assert_array_equal(grown.items.pids, pids)
    q = feats[::11]
    np.testing.assert_array_equal(grown.search(q, 5).ids, whole.search(q, 5).ids)
    # the old generation's files are gone, the new ones are what meta.json names
    names = sorted(p.name for p in (tmp_path / "ix").iterdir())
    assert names == ["index-1.faiss", "items-1.npz", "meta.json"]


def test_metadata_round_trip(features, tmp_path):
    feats, pids, camids = features
    root = tmp_path / "imgs"
    paths = [str(root / f"cam{c}" / f"{i:05d}.jpg") for i, c in enumerate(camids)]
    idx = GalleryIndex.build(feats, pids, camids, paths, kind="flat")
    idx.save(tmp_path / "ix")
    back = GalleryIndex.load(tmp_path / "ix")
    assert back.roots == [root]  # the common folder of all images
    np.testing.assert_array_equal(back.items.pids, pids)
    np.testing.assert_array_equal(back.items.camids, camids)
    assert [str(back.path_of(i)) for i in range(len(back))] == paths
    np.testing.assert_allclose(back.vectors([0, 5]), feats[[0, 5]] / np.linalg.norm(feats[[0, 5]], axis=1, keepdims=True),
                               atol=1e-6)
    meta = json.loads((tmp_path / "ix" / "meta.json").read_text())
    assert meta["count"] == len(feats) and meta["metric"] == "cosine"


def test_relative_paths_and_explicit_roots(tmp_path):
    feats = np.eye(3, dtype=np.float32)
    idx = GalleryIndex.build(feats, paths=["a/1.jpg", "b/2.jpg", "/elsewhere/3.jpg"], kind="flat",
                             roots=[tmp_path, "/elsewhere"])
    assert idx.path_of(0) == tmp_path / "a" / "1.jpg"
    assert idx.items.root.tolist() == [0, 0, 1] and idx.items.relpaths[2] == "3.jpg"
    with pytest.raises(IndexFileError, match="outside every root"):
        GalleryIndex.build(feats, paths=["/x/1.jpg", "/y/2.jpg", "/x/3.jpg"], roots=["/x"])
    with pytest.raises(IndexFileError, match="--root"):  # the only common folder would be '/'
        GalleryIndex.build(feats, paths=["/x/1.jpg", "/y/2.jpg", "/x/3.jpg"])


def test_dimension_mismatch_names_both_dims(features, tmp_path):
    feats, pids, camids = features
    idx = GalleryIndex.build(feats, pids, camids, kind="flat")
    idx.save(tmp_path / "ix")
    idx = GalleryIndex.load(tmp_path / "ix")
    with pytest.raises(IndexFileError, match=r"has dim 32, new.npz have dim 16"):
        idx.add(np.ones((2, 16)), source="new.npz")
    with pytest.raises(IndexFileError, match=r"has dim 32, queries have dim 8"):
        idx.search(np.ones((2, 8)))
    with pytest.raises(IndexFileError, match="pids: 1 values for 2 features"):
        idx.add(np.ones((2, 32)), pids=[1])
    assert len(idx) == len(feats)  # nothing half-added


def test_corrupt_and_inconsistent_folders(features, tmp_path):
    feats, pids, camids = features
    folder = tmp_path / "ix"
    GalleryIndex.build(feats, pids, camids, kind="flat").save(folder)
    meta = json.loads((folder / "meta.json").read_text())

    with pytest.raises(IndexFileError, match="index folder not found"):
        GalleryIndex.load(tmp_path / "nope")
    with pytest.raises(IndexFileError, match="not a reidkit index"):
        GalleryIndex.load(tmp_path)

    data = (folder / "index-0.faiss").read_bytes()
    (folder / "index-0.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFileError, match="checksum differs"):
        GalleryIndex.load(folder)
    with pytest.raises(IndexFileError, match="not a readable faiss index"):
        GalleryIndex.load(folder, verify=False)
    (folder / "index-0.faiss").write_bytes(data)

    (folder / "meta.json").write_text("{not json")
    with pytest.raises(IndexFileError, match="meta.json: not valid JSON"):
        GalleryIndex.load(folder)
    (folder / "meta.json").write_text(json.dumps({**meta, "count": 7}))
    with pytest.raises(IndexFileError, match="holds 240 vectors of dim 32, meta.json says 7"):
        GalleryIndex.load(folder)
    (folder / "meta.json").write_text(json.dumps({**meta, "index_file": "../../etc/passwd"}))
    with pytest.raises(IndexFileError, match="plain file name"):
        GalleryIndex.load(folder)
    (folder / "meta.json").write_text(json.dumps({**meta, "format": "other/1"}))
    with pytest.raises(IndexFileError, match="expected 'reidkit.index/1'"):
        GalleryIndex.load(folder)
    (folder / "meta.json").write_text(json.dumps(meta))
    np.savez(folder / "items-0.npz", pids=pids[:3], camids=camids[:3], root=np.zeros(3, np.int32),
             relpaths=np.array(["a"] * 3))
    with pytest.raises(IndexFileError, match="do not match the 240 vectors"):
        GalleryIndex.load(folder)
    (folder / "items-0.npz").unlink()
    with pytest.raises(IndexFileError, match="items-0.npz: missing"):
        GalleryIndex.load(folder)


def test_a_failed_save_leaves_the_old_index(features, tmp_path, monkeypatch):
    feats, pids, camids = features
    folder = tmp_path / "ix"
    GalleryIndex.build(feats[:50], pids[:50], camids[:50], kind="flat").save(folder)
    idx = GalleryIndex.load(folder)
    idx.add(feats[50:], pids[50:], camids[50:])

    import reidkit.utils.io as io
    def crash(*a, **k):
        raise KeyboardInterrupt  # killed between the new files and meta.json
    monkeypatch.setattr(io, "save_json", crash)
    with pytest.raises(KeyboardInterrupt):
        idx.save(folder)
    assert len(GalleryIndex.load(folder)) == 50


def test_ivfpq_refine_recovers_exact_ranking(clustered, brute_force):
    feats, pids, camids = clustered(150, 8, 16, seed=3)  # 16 dims: 2 sub-quantisers of 4 bits, very lossy
    q = feats[::7] + 0.01
    ref, ref_scores = brute_force(feats, q, 10)
    plain = GalleryIndex.build(feats, kind="ivfpq", params={"refine": "none"})
    refined = GalleryIndex.build(feats, kind="ivfpq", params={"refine": "flat", "k_factor": 16})
    assert recall_at(plain.search(q, 10).ids, ref) < 0.7
    res = refined.search(q, 10)
    assert recall_at(res.ids, ref) >= 0.95
    # re-scored with exact vectors: the scores of the found neighbours are exact cosines
    np.testing.assert_allclose(res.scores[:, 0], ref_scores[:, 0], atol=1e-5)
    with pytest.raises(IndexFileError, match="refine must be none, sq8 or flat"):
        GalleryIndex.build(feats, kind="ivfpq", params={"refine": "opq"})


def numpy_top_k(gallery: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact cosine top-k by a float64 matrix product and a full sort (no faiss)."""
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return np.argsort(-(q.astype(np.float64) @ g.astype(np.float64).T), axis=1, kind="stable")[:, :k]


def noisy_identities(n_ids=300, per_id=20, dim=64, n_queries=60, seed=5):
    """Gallery (n_ids * per_id, dim) and fresh queries of its identities, as in bench/search_speed.py:
    per-image noise as large as the identity direction, so an identity's images scatter over many
    inverted lists."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    pids = np.repeat(np.arange(n_ids), per_id)
    feats = centres[pids] + rng.normal(size=(len(pids), dim))
    queries = centres[rng.integers(0, n_ids, n_queries)] + rng.normal(size=(n_queries, dim))
    return feats.astype(np.float32), pids, queries.astype(np.float32)


def test_default_ivfpq_reaches_high_recall_on_noisy_identities():
    feats, pids, queries = noisy_identities(300, 20, 128)
    ref = numpy_top_k(feats, queries, 10)
    idx = GalleryIndex.build(feats, pids, kind="ivfpq")  # the defaults users get without flags
    p = idx.params
    assert p["fast_scan"] and p["refine"] == "sq8" and p["nprobe"] == int(np.ceil(0.35 * p["nlist"]))
    default_recall = recall_at(idx.search(queries, 10).ids, ref)
    assert default_recall >= 0.97
    # the probe share is what buys the recall: one list per query misses neighbours (~0.95 here;
    # on the 1M bench gallery, where ~25 identities share a list, far more)
    idx.set_search_params(nprobe=1)
    assert recall_at(idx.search(queries, 10).ids, ref) < default_recall - 0.02


def test_default_hnsw_reaches_high_recall_on_noisy_identities():
    feats, pids, queries = noisy_identities(150, 20, 128, seed=9)
    ref = numpy_top_k(feats, queries, 10)
    idx = GalleryIndex.build(feats, pids, kind="hnsw")
    assert recall_at(idx.search(queries, 10).ids, ref) >= 0.95


def test_search_params_override_and_validation(features, tmp_path):
    feats, pids, camids = features
    big = np.concatenate([feats + 0.01 * i for i in range(6)])  # 1,440 vectors: enough to train ivfpq
    idx = GalleryIndex.build(big, kind="ivfpq", params={"nlist": 20})
    assert idx.params["nprobe"] == 7  # the default share (35 %) of the lists asked for
    idx.set_search_params(nprobe=3, k_factor=8)
    import faiss
    assert faiss.extract_index_ivf(idx.faiss).nprobe == 3 and idx.faiss.k_factor == 8
    idx.save(tmp_path / "ix")
    assert GalleryIndex.load(tmp_path / "ix").params["nprobe"] == 3
    with pytest.raises(IndexFileError, match=r"\['efSearch'\] do not apply to a ivfpq index"):
        idx.set_search_params(efSearch=10)
    with pytest.raises(IndexFileError, match="nprobe must be positive"):
        idx.set_search_params(nprobe=0)
    with pytest.raises(IndexFileError, match="fast-scan codes are 4-bit"):
        GalleryIndex.build(big, kind="ivfpq", params={"nbits": 8})
    plain = GalleryIndex.build(big, kind="ivfpq", params={"refine": "none", "nlist": 20})
    with pytest.raises(IndexFileError, match="k_factor applies to an ivfpq index with refine"):
        plain.set_search_params(k_factor=2)
    with pytest.raises(IndexFileError, match="do not apply to a flat index"):
        GalleryIndex.build(feats, kind="flat").set_search_params(nprobe=2)


def test_load_applies_the_build_time_root_rules(tmp_path):
    """A copied index folder whose meta.json widens its roots to '/' (or points outside) is refused."""
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    idx = GalleryIndex.build(np.eye(3, dtype=np.float32), paths=[str(img_dir / f"{i}.jpg") for i in range(3)],
                             kind="flat")
    idx.save(tmp_path / "ix")
    meta_path = tmp_path / "ix" / "meta.json"
    good = json.loads(meta_path.read_text())
    assert GalleryIndex.load(tmp_path / "ix").roots == [img_dir]
    for roots in (["/"], ["relative/dir"], [str(img_dir) + "/../.."], "/", [7]):
        meta_path.write_text(json.dumps(dict(good, roots=roots)))
        with pytest.raises(IndexFileError, match="meta.json"):
            GalleryIndex.load(tmp_path / "ix")
    with pytest.raises(IndexFileError, match="whole filesystem"):
        GalleryIndex.build(np.eye(2, dtype=np.float32), paths=["/etc/passwd.jpg", "/x.jpg"], roots=["/"])


def test_load_refuses_item_paths_that_leave_their_root(tmp_path):
    img_dir = tmp_path / "imgs"
    idx = GalleryIndex.build(np.eye(2, dtype=np.float32), paths=[str(img_dir / "a.jpg"), str(img_dir / "b.jpg")],
                             kind="flat")
    idx.items.relpaths[1] = "../../etc/passwd.jpg"
    idx.save(tmp_path / "ix")
    with pytest.raises(IndexFileError, match="not relative to its root"):
        GalleryIndex.load(tmp_path / "ix")


def test_search_and_eval_agree_on_r1_for_tied_scores():
    """Identical gallery vectors tie exactly; `reidkit eval` orders a tie by gallery index, and so
    must `reidkit search` / the web UI (faiss's flat heap put the *last* tied id first)."""
    from reidkit.evaluation.featurefile import FeatureSet
    from reidkit.evaluation.metrics import evaluate
    from reidkit.retrieval.search import Queries, search

    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 16)).astype(np.float32)
    gallery = np.repeat(base, 12, axis=0)
    g_pids = np.arange(72) % 12 + 100           # within a block of copies, every copy another pid
    g_pids[::12] = np.arange(6)                 # ... except the first copy: the query's own id
    q = FeatureSet(base, np.arange(6), np.full(6, -1))
    g = FeatureSet(gallery, g_pids, np.full(72, -1))
    res = evaluate(query=q, gallery=g, metric="cosine", protocol="no-camera")
    assert res["cmc"][0] == 1.0  # the tie goes to the lowest gallery index
    for kind in ("flat", "hnsw"):
        idx = GalleryIndex.build(gallery, g_pids, np.full(72, -1), kind=kind)
        for k in (1, 5, 12, 30):
            hits = search(idx, Queries(base, [str(i) for i in range(6)], q.pids, q.camids), k=k)
            top1 = np.array([h["results"][0]["pid"] for h in hits])
            assert float((top1 == q.pids).mean()) == res["cmc"][0], (kind, k)
            ids = [[r["id"] for r in h["results"]] for h in hits]
            assert ids == [list(range(12 * i, 12 * i + min(k, 12))) + ids[i][12:] for i in range(6)]
