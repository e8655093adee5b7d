"""Synthetic tracklets: DukeMTMC-VideoReID layout, protocol invariants, motion, determinism, reader round-trip."""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.config import ConfigError
from reidkit.data.synth import SynthError
from reidkit.data.synth.tracklets import TrackletSynthConfig, generate_tracklets

NAME = re.compile(r"^(\d{4})_C(\d)_F(\d{4})_X(\d{5})\.jpg$")
TINY = dict(train_ids=5, test_ids=4, distractors=3, cameras=3, min_frames=3, max_frames=6, height=64, width=32)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_tracklets(TrackletSynthConfig(**TINY, jitter_prob=0.2, turn_prob=0.5),
                              tmp_path_factory.mktemp("tracklets"), progress=False)


def _tracklets(root: Path, split: str) -> list[tuple[int, int, list[Path]]]:
    """(pid, camera 0-based, frames) of every tracklet folder, checking every file name."""
    out = []
    for tdir in sorted((root / split).glob("*/*")):
        frames = sorted(tdir.iterdir())
        parsed = [NAME.match(p.name) for p in frames]
        assert all(parsed), [p.name for p in frames]
        assert {m.group(1) for m in parsed} == {tdir.parent.name}           # pid in name = pid folder
        assert len({m.group(2) for m in parsed}) == 1                        # one camera per tracklet
        assert [int(m.group(3)) for m in parsed] == list(range(1, len(frames) + 1))
        clock = [int(m.group(4)) for m in parsed]
        assert clock == list(range(clock[0], clock[0] + len(frames)))
        out.append((int(tdir.parent.name), int(parsed[0].group(2)) - 1, frames))
    return out


def test_duke_video_layout_and_protocol_invariants(synth):
    train, query, gallery = (_tracklets(synth.root, s) for s in ("train", "query", "gallery"))
    train_ids, query_ids = {p for p, _, _ in train}, {p for p, _, _ in query}
    gallery_ids = {p for p, _, _ in gallery}
    assert len(train_ids) == 5 and len(query_ids) == 4 and not train_ids & (query_ids | gallery_ids)
    assert len(query) == 4                                   # one query tracklet per test id
    assert len(gallery_ids - query_ids) == 3                 # distractors: gallery only
    cams = defaultdict(set)
    for p, c, _ in gallery:
        cams[p].add(c)
    for p, c, _ in query:                                    # a correct match in another camera
        assert cams[p] - {c}
    seen = defaultdict(set)
    for p, c, _ in train:
        seen[p].add(c)
    assert all(len(cs) >= 2 for cs in seen.values())
    assert all(3 <= len(f) <= 6 for _, _, f in train + query + gallery)
    assert synth.num_frames == sum(len(f) for _, _, f in train + query + gallery)
    with Image.open(query[0][2][0]) as im:
        assert im.mode == "RGB" and im.size == (32, 64)


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im, np.float32)


def test_frames_move_but_stay_the_same_person(synth):
    """Consecutive frames differ (gait, drift) yet are closer to each other than to other ids' frames."""
    tracklets = _tracklets(synth.root, "train")
    within, between = [], []
    for i, (pid, _, frames) in enumerate(tracklets):
        imgs = [_load(f) for f in frames]
        assert all(np.abs(a - b).mean() > 0.5 for a, b in zip(imgs, imgs[1:]))   # nothing is frozen
        within += [np.abs(a - b).mean() for a, b in zip(imgs, imgs[1:])]
        for pid2, _, frames2 in tracklets[i + 1:]:
            if pid2 != pid:
                between.append(np.abs(imgs[0] - _load(frames2[0])).mean())
    assert np.mean(within) < np.mean(between)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    cfg = dict(TINY, train_ids=2, test_ids=2, distractors=1)
    a = generate_tracklets(TrackletSynthConfig(**cfg), tmp_path / "a", progress=False)
    b = generate_tracklets(TrackletSynthConfig(**cfg, workers=2), tmp_path / "b", progress=False)
    c = generate_tracklets(TrackletSynthConfig(**cfg, seed=1), tmp_path / "c", progress=False)
    da, db, dc = _digest(a.root), _digest(b.root), _digest(c.root)
    assert da == db and da != dc


def test_reader_round_trip(synth):
    from reidkit.data.datasets import load_dataset

    ds = load_dataset("duke-video", synth.root)
    assert not ds.problems
    for split, ids, n, cams in ds.statistics():
        s = synth.stats[split]
        assert (ids, n, cams) == (s["ids"], s["tracklets"], s["cameras"])
    assert [f for f in ds.frame_statistics()] and sum(r[1] for r in ds.frame_statistics()) == synth.num_frames
    assert {t.pid for t in ds.train} == set(range(5))
    by_folder = {str(Path(t.frames[0]).parent): t for t in ds.query + ds.gallery}
    for pid, cam, frames in _tracklets(synth.root, "query") + _tracklets(synth.root, "gallery"):
        t = by_folder[str(frames[0].parent)]
        assert (t.pid, t.camid, [Path(f) for f in t.frames]) == (pid, cam, frames)


def test_refuses_to_overwrite_and_names_bad_fields(synth, tmp_path):
    with pytest.raises(SynthError, match="already holds"):
        generate_tracklets(TrackletSynthConfig(**TINY), synth.root, progress=False)
    with pytest.raises(ConfigError, match="TrackletSynthConfig.max_frames"):
        generate_tracklets(TrackletSynthConfig(**dict(TINY, max_frames=2)), tmp_path, progress=False)


def test_cli_synth_tracklets(tmp_path):
    from typer.testing import CliRunner

    from reidkit.cli.main import app

    out = tmp_path / "cli"
    args = ["synth", str(out), "--tracklets", "--ids", "2", "--cameras", "2", "--distractors", "1",
            "--min-frames", "2", "--max-frames", "3", "--height", "64", "--width", "32"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    text = "".join(res.output.split())      # rich wraps long lines (and paths) at the terminal width
    assert "DukeMTMC-VideoReID" in text and "frames/s" in text and "--formatduke-video" in text
    assert {p.name for p in out.iterdir()} == {"train", "query", "gallery", "synth_tracklets.json"}
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
