"""PK sampler properties, checked by counting over whole epochs."""
from collections import Counter

import numpy as np
import pytest

from reidkit.data.samplers import PKSampler


def _pids(seed=0, num_ids=30):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 12, num_ids)  # some ids have fewer than K images
    return np.repeat(np.arange(num_ids), counts), counts


def test_batches_hold_p_ids_times_k_images_of_that_id():
    pids, counts = _pids()
    s = PKSampler(pids, num_ids=4, num_instances=4, seed=1)
    batches = list(s)
    assert len(batches) == len(s) > 0
    for b in batches:
        assert len(b) == 16
        ids = [pids[i] for i in b]
        c = Counter(ids)
        assert len(c) == 4 and set(c.values()) == {4}
        # the K images of an id are contiguous in the batch
        assert all(len(set(ids[j:j + 4])) == 1 for j in range(0, 16, 4))


def test_small_ids_sampled_with_replacement_large_ids_without():
    pids, counts = _pids(1)
    s = PKSampler(pids, num_ids=3, num_instances=4, seed=0)
    used = Counter()
    for b in s:
        for j in range(0, len(b), 4):
            chunk = b[j:j + 4]
            pid = pids[chunk[0]]
            if counts[pid] >= 4:
                assert len(set(chunk)) == 4
            used.update(chunk)
    for i, n in used.items():
        if counts[pids[i]] >= 4:
            assert n == 1, "an index of an id with >= K images is used at most once per epoch"


def test_epoch_ends_when_fewer_than_p_ids_have_chunks_left():
    pids, counts = _pids(2)
    P, K = 5, 4
    s = PKSampler(pids, num_ids=P, num_instances=K, seed=3)
    chunks_total = {p: max(int(c), K) // K for p, c in enumerate(counts)}
    chunks_used = Counter()
    for b in s:
        for j in range(0, len(b), K):
            chunks_used[pids[b[j]]] += 1
    left = [p for p in chunks_total if chunks_used[p] < chunks_total[p]]
    assert all(chunks_used[p] <= chunks_total[p] for p in chunks_total)
    assert len(left) < P
    assert len(s) * P == sum(chunks_used.values())


def test_seeded_and_changes_with_epoch():
    pids, _ = _pids(3)
    a = PKSampler(pids, 4, 4, seed=7)
    b = PKSampler(pids, 4, 4, seed=7)
    assert list(a) == list(b)
    e0 = list(a)
    a.set_epoch(1)
    assert list(a) != e0
    a.set_epoch(0)
    assert list(a) == e0


def test_ddp_ranks_disjoint_same_length_and_cover_the_plan():
    pids, _ = _pids(4, num_ids=60)
    single = PKSampler(pids, 4, 4, seed=2, rank=0, world_size=1)
    plan = list(single)
    world = 3
    ranks = [PKSampler(pids, 4, 4, seed=2, rank=r, world_size=world) for r in range(world)]
    lens = {len(r) for r in ranks}
    assert lens == {len(plan) // world}
    per_rank = [list(r) for r in ranks]
    for step in range(len(plan) // world):
        for r in range(world):
            assert per_rank[r][step] == plan[step * world + r]
    seen = [tuple(b) for bs in per_rank for b in bs]
    assert len(seen) == len(set(seen))


def test_with_seeds_pairs_and_seeds_do_not_depend_on_world_size():
    pids, _ = _pids(5, num_ids=40)
    one = list(PKSampler(pids, 4, 4, seed=9, rank=0, world_size=1, with_seeds=True))
    two = list(PKSampler(pids, 4, 4, seed=9, rank=1, world_size=2, with_seeds=True))
    assert all(isinstance(i, int) and isinstance(sd, int) for i, sd in one[0])
    assert two[0] == one[1]
    all_seeds = [sd for b in one for _, sd in b]
    assert len(set(all_seeds)) == len(all_seeds)


def test_too_few_ids_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than"):
        PKSampler([0, 0, 1, 1], num_ids=4, num_instances=2)
    with pytest.raises(ValueError):
        PKSampler([0, 1], num_ids=0)
