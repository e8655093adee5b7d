import random

import numpy as np
import pytest
import torch

from reidkit.utils.checkpoint import (CheckpointError, NonFiniteLossError, check_finite, load_state, rng_state,
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
    with pytest.raises(CheckpointError, match="safely"):
        load_state(tmp_path / "evil.pt")


def test_nan_guard():
    check_finite(torch.tensor(1.0), "epoch 1")
    with pytest.raises(NonFiniteLossError, match="epoch 2 iter 5"):
        check_finite(torch.tensor(float("nan")), "epoch 2 iter 5")
