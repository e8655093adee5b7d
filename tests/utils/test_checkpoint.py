import random

import numpy as np
import pytest
import torch

from reidkit.utils.checkpoint import (CheckpointError, load_state, rng_state,
                                      save_state, set_rng_state)


def test_state_roundtrip_restores_rngs(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "rng": rng_state()}
    save_state(tmp_path / "last.pt", state)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    back = load_state(tmp_path / "last.pt")
    set_rng_state(back["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert back["epoch"] == 3
    torch.testing.assert_close(back["model"]["weight"], model.weight.detach())


class Evil:
    """Any non-allow-listed class: loading it would need full unpickling."""


def test_unsafe_or_missing_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_state(tmp_path / "none.pt")
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="contains code"):
        load_state(tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="safely"):
        load_state(tmp_path / "junk.pt")


class _Shell:
    def __reduce__(self):
        import os
        return os.system, ("echo should-never-run",)


def test_unsafe_training_state_message_is_the_plain_one(tmp_path):
    """issue 16 item 9: the same plain sentence as models/checkpoints.py, naming the blocked global."""
    torch.save({"model": {"w": torch.zeros(1)}, "obj": _Shell()}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError) as info:
        load_state(tmp_path / "last.pt")
    msg = str(info.value)
    assert "this file contains code (posix.system); refusing; re-save the state_dict from a trusted " \
           "environment" in msg
    assert "weights_only=False" not in msg and "\n" not in msg


def test_every_state_carries_a_checksum_and_a_flipped_byte_is_refused(tmp_path):
    """issue 16 item 12: 64 flipped bytes in last.pt are caught on load with a named error."""
    path = tmp_path / "last.pt"
    save_state(path, {"weights": torch.arange(100_000, dtype=torch.float32), "epoch": 2})
    assert "checksum" in torch.load(path, weights_only=True)
    assert load_state(path)["epoch"] == 2 and "checksum" not in load_state(path)
    raw = bytearray(path.read_bytes())
    start = len(raw) // 2  # inside the 400 KB tensor record
    raw[start:start + 64] = bytes(b ^ 0xFF for b in raw[start:start + 64])
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"last.pt: checksum mismatch, the file is corrupt"):
        load_state(path)


def test_a_state_written_before_checksums_still_loads(tmp_path):
    torch.save({"epoch": 1, "w": torch.ones(3)}, tmp_path / "old.pt")
    assert load_state(tmp_path / "old.pt")["epoch"] == 1


def test_disk_full_is_a_named_error_and_keeps_the_previous_file(tmp_path, monkeypatch):
    """issue 16 item 13: ENOSPC during the write -> 'no space left on device: <path> (<free> free, <needed> needed)'."""
    import errno

    from reidkit.utils.io import DiskFullError

    path = tmp_path / "last.pt"
    save_state(path, {"epoch": 1, "w": torch.zeros(1000)})
    before = path.read_bytes()

    def full_disk(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(DiskFullError, match=r"no space left on device: .*last.pt \(.* free, .* needed\)"):
        save_state(path, {"epoch": 2, "w": torch.zeros(1000)})
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_torch_wrapped_disk_full_is_recognised(tmp_path, monkeypatch):
    """torch reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc] . unexpected pos``."""
    import shutil
    from collections import namedtuple

    from reidkit.utils.io import DiskFullError

    def broken(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 4416 vs 4310")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", broken)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 100, 100))
    with pytest.raises(DiskFullError, match=r"\(100 B free, .* needed\)"):
        save_state(tmp_path / "last.pt", {"w": torch.zeros(10_000)})
