"""CFS scoring vs a direct cosine computation, shard resume, selection."""
import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.data.transforms import build_test_transform
from reidkit.methods import cfs
from reidkit.models import build_model, save_model


def models(tmp_path):
    torch.manual_seed(0)
    s = build_model("vit_micro", num_classes=0)
    t = build_model("vit_micro", num_classes=5)
    with torch.no_grad():  # the "fine-tuned" model: the source plus a perturbation
        t.backbone.load_state_dict(s.backbone.state_dict())
        for p in t.backbone.blocks[-1].parameters():
            p.add_(torch.randn_like(p) * 0.2)
    save_model(s, tmp_path / "s.safetensors")
    save_model(t, tmp_path / "t.safetensors")
    return s.eval(), t.eval()


def direct_scores(s, t, paths):
    """One image at a time: cosine of the CLS tokens after the final norm (pre-BN)."""
    tf = build_test_transform((64, 32))
    out = {}
    with torch.no_grad():
        for p in paths:
            x = tf(Image.open(p).convert("RGB"))[None]
            a = s.backbone.forward_features(x)[0, 0]
            b = t.backbone.forward_features(x)[0, 0]
            out[p] = float(a @ b / (a.norm() * b.norm()))
    return out


def test_scores_match_direct_cosine_and_are_sorted(pool, tmp_path):
    s, t = models(tmp_path)
    (pool / "sub1" / "bad.jpg").write_bytes(b"garbage")
    out = cfs.score(tmp_path / "s.safetensors", tmp_path / "t.safetensors", pool, tmp_path / "scores.tsv",
                    batch_size=5, num_workers=0, shard_size=4, progress=False)
    names, values = cfs.read_scores(out)
    assert len(names) == 12 and "sub1/bad.jpg" not in names
    assert (tmp_path / "scores.tsv.skipped.txt").read_text().strip() == "sub1/bad.jpg"
    assert all(a >= b for a, b in zip(values, values[1:]))
    ref = direct_scores(s, t, [str(pool / n) for n in names])
    np.testing.assert_allclose(values, [ref[str(pool / n)] for n in names], atol=2e-5)
    assert len(set(np.round(values, 4))) > 1


def test_killed_scoring_resumes_from_finished_shards(pool, tmp_path, monkeypatch):
    s, t = models(tmp_path)
    ref = cfs.score(s, t, pool, tmp_path / "ref.tsv", batch_size=4, num_workers=0, shard_size=4, progress=False)

    calls = {"n": 0}
    real = cfs.pre_bn_feature

    def dies_on_third_batch(model, x):
        calls["n"] += 1
        if calls["n"] == 5:  # two features per batch: batch 3 = shard 2 of 3
            raise KeyboardInterrupt
        return real(model, x)

    monkeypatch.setattr(cfs, "pre_bn_feature", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        cfs.score(s, t, pool, tmp_path / "run.tsv", batch_size=4, num_workers=0, shard_size=4, progress=False)
    shards = sorted((tmp_path / "run.tsv.shards").glob("shard_*.npy"))
    assert [p.name for p in shards] == ["shard_000000.npy", "shard_000001.npy"]
    assert not (tmp_path / "run.tsv").exists()

    calls["n"] = -100  # resume: only the missing shard is computed (one batch = 2 calls)
    before = calls["n"]
    cfs.score(s, t, pool, tmp_path / "run.tsv", batch_size=4, num_workers=0, shard_size=4, progress=False)
    assert calls["n"] - before == 2
    assert (tmp_path / "run.tsv").read_text() == ref.read_text()


def test_shards_of_another_job_are_refused(pool, tmp_path):
    s, t = models(tmp_path)
    cfs.score(s, t, pool, tmp_path / "x.tsv", num_workers=0, shard_size=4, progress=False)
    with pytest.raises(cfs.CFSError, match="another scoring job"):
        cfs.score(t, s, pool, tmp_path / "x.tsv", num_workers=0, shard_size=4, progress=False)


def write_scores(path, n=10):
    rng = np.random.default_rng(0)
    vals = np.sort(rng.random(n))[::-1]
    path.write_text("# header\n" + "".join(f"img_{i:02d}.jpg\t{v:.6f}\n" for i, v in enumerate(vals)))
    return vals


def test_select_ratio_num_and_random(tmp_path):
    write_scores(tmp_path / "s.tsv", 10)
    top = cfs.select(tmp_path / "s.tsv", tmp_path / "top.txt", keep_ratio=0.5)
    assert top == [f"img_{i:02d}.jpg" for i in range(5)]
    lines = [ln for ln in (tmp_path / "top.txt").read_text().splitlines() if not ln.startswith("#")]
    assert lines == top
    assert cfs.select(tmp_path / "s.tsv", tmp_path / "n.txt", keep_num=3) == top[:3]
    assert len(cfs.select(tmp_path / "s.tsv", tmp_path / "n.txt", keep_num=30)) == 10
    r1 = cfs.select(tmp_path / "s.tsv", tmp_path / "r1.txt", keep_ratio=0.5, random=True, seed=1)
    r2 = cfs.select(tmp_path / "s.tsv", tmp_path / "r2.txt", keep_ratio=0.5, random=True, seed=1)
    r3 = cfs.select(tmp_path / "s.tsv", tmp_path / "r3.txt", keep_ratio=0.5, random=True, seed=2)
    assert r1 == r2 and r1 != r3 and len(r1) == 5 and len(set(r1)) == 5


def test_selected_list_feeds_the_pretrain_reader(pool, tmp_path):
    from reidkit.data.datasets.unlabelled import load_paths

    s, t = models(tmp_path)
    cfs.score(s, t, pool, tmp_path / "s.tsv", num_workers=0, progress=False)
    kept = cfs.select(tmp_path / "s.tsv", tmp_path / "list.txt", keep_ratio=0.5)
    assert load_paths(pool, file_list=tmp_path / "list.txt") == [str(pool / n) for n in kept]
    # the scores file is itself an ordered list (the score column is ignored)
    assert len(load_paths(pool, file_list=tmp_path / "s.tsv", keep_ratio=0.25)) == 3


def test_keep_count_official_luperson_numbers():
    assert cfs.keep_count(4_180_243, keep_ratio=0.5) == 2_090_122
    assert cfs.keep_count(4_180_243, keep_ratio=0.6) == 2_508_146
    with pytest.raises(cfs.CFSError, match="exactly one"):
        cfs.keep_count(10)
    with pytest.raises(cfs.CFSError, match="keep_ratio"):
        cfs.keep_count(10, keep_ratio=1.5)


def test_bad_scores_file_named(tmp_path):
    (tmp_path / "bad.tsv").write_text("a.jpg\tnot-a-number\n")
    with pytest.raises(cfs.CFSError, match=r"bad.tsv:1"):
        cfs.read_scores(tmp_path / "bad.tsv")


def test_ranks_score_their_own_shards_and_rank0_merges(pool, tmp_path, monkeypatch):
    """torchrun split: rank r scores shards r, r + world, ...; rank 0 merges all of them."""
    s, t = models(tmp_path)
    ref = cfs.score(s, t, pool, tmp_path / "ref.tsv", num_workers=0, shard_size=3, progress=False)
    monkeypatch.setattr(cfs.dist, "barrier", lambda: None)
    monkeypatch.setattr(cfs, "_dist", lambda: (1, 2))
    cfs.score(s, t, pool, tmp_path / "d.tsv", num_workers=0, shard_size=3, progress=False)
    shards = sorted(p.name for p in (tmp_path / "d.tsv.shards").glob("shard_*.npy"))
    assert shards == ["shard_000001.npy", "shard_000003.npy"] and not (tmp_path / "d.tsv").exists()
    monkeypatch.setattr(cfs, "_dist", lambda: (0, 2))
    cfs.score(s, t, pool, tmp_path / "d.tsv", num_workers=0, shard_size=3, progress=False)
    assert (tmp_path / "d.tsv").read_text() == ref.read_text()
