from dataclasses import dataclass, field

import pytest

from reidkit.config import ConfigError, load_config, save_config, to_dict


@dataclass
class Solver:
    lr: float = 4e-4
    epochs: int = 120
    steps: tuple[int, ...] = (40, 70)


@dataclass
class Recipe:
    name: str = "x"
    amp: bool = False
    solver: Solver = field(default_factory=Solver)
    size: tuple[int, int] = (256, 128)


def test_yaml_and_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("name: base\nsolver:\n  lr: 0.01\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\nsolver:\n  epochs: 5\n")
    cfg = load_config(Recipe, child, ["solver.lr=3.5e-4", "amp=true", "size=[384,128]"])
    assert cfg.name == "base" and cfg.solver.epochs == 5 and cfg.solver.lr == pytest.approx(3.5e-4)
    assert cfg.amp is True and cfg.size == (384, 128)
    out = tmp_path / "resolved.yaml"
    save_config(cfg, out)
    again = load_config(Recipe, out)
    assert to_dict(again) == to_dict(cfg)


@pytest.mark.parametrize("override,msg", [
    ("solver.lrr=1", "unknown key"),
    ("solver.epochs=abc", "expected an integer"),
    ("amp=maybe", "expected true/false"),
    ("nodots", "must look like"),
])
def test_bad_overrides_are_named(override, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(Recipe, None, [override])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Recipe, tmp_path / "nope.yaml")
