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


@dataclass
class Knobs:
    epochs: int = 1
    knn_k: int | float | None = None


@pytest.mark.parametrize("value", ["2.7", "0.5"])
def test_a_fraction_never_becomes_an_int(value):
    """issue 11: solver.epochs=2.7 used to become 2."""
    with pytest.raises(ConfigError, match=rf"config.epochs: expected an integer, got {value}"):
        load_config(Knobs, None, [f"epochs={value}"])
    assert load_config(Knobs, None, ["epochs=3.0"]).epochs == 3


@pytest.mark.parametrize("value,want", [("1", 1), ("1.0", 1.0), ("0.5", 0.5), ("8", 8)])
def test_int_or_float_keeps_the_type_it_was_given(value, want):
    """knn_k=1.0 is a ratio (dense attention), knn_k=1 a count of one key: they must stay apart."""
    got = load_config(Knobs, None, [f"knn_k={value}"]).knn_k
    assert got == want and type(got) is type(want)


def test_base_that_includes_itself_is_a_named_error(tmp_path):
    """issue 16 item 15: a _base_ loop used to end in RecursionError."""
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"_base_ includes itself"):
        load_config(Recipe, tmp_path / "a.yaml")
    (tmp_path / "self.yaml").write_text("_base_: self.yaml\n")
    with pytest.raises(ConfigError, match=r"self.yaml: _base_ includes itself"):
        load_config(Recipe, tmp_path / "self.yaml")


def test_recipe_diff_compares_paths_resolved(tmp_path, monkeypatch):
    from reidkit.config import flatten, recipe_diff

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    old = flatten({"data": {"root": "data", "size": [1, 2]}, "solver": {"epochs": 8}})
    new = flatten({"data": {"root": str(tmp_path / "data"), "size": [1, 2]}, "solver": {"epochs": 3}})
    assert recipe_diff(old, new) == [("solver.epochs", 8, 3)]
