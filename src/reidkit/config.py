"""Typed configs: dataclasses that load from and save to YAML, with ``key.sub=value`` overrides.

Every training method declares its recipe as a tree of dataclasses. A YAML file gives values
for some fields; command-line overrides (``solver.lr=4e-4 data.root=/data``) give the rest.
Unknown keys are errors (a typo must never be silently ignored), and values are converted to
the declared field type. The resolved config is saved next to each run with :func:`save_config`.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the declared recipe."""


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config dataclass (tuples become lists, for YAML)."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v
    return plain(cfg)


def _convert(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if typ is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if int in args and float in args and isinstance(value, (int, float)) and not isinstance(value, bool):
            return value  # an ``int | float`` field keeps the type it was given: 1 is a count, 1.0 a ratio
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} fits none of {typ}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(typ, value, where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_convert(v, a, where) for v, a in zip(value, args))
        inner = args[0] if args else Any
        out = [_convert(v, inner, where) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, float):
            if value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r} (a fraction is never rounded)")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if typ is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a (possibly partial) nested dict; defaults fill the rest."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(names)}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set ``a.b.c=value`` entries into a nested dict (values parsed as YAML scalars)."""
    for text in overrides:
        keys, value = _parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a section")
        node[keys[-1]] = value
    return data


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load ``cls`` from a YAML file (``_base_: other.yaml`` inherits) plus overrides. Keys of an older
    vocabulary are refused with their new name; a recipe with a ``check_recipe()`` method is checked."""
    data: dict = {}
    if path is not None:
        data = _read_yaml(Path(path))
    data = apply_overrides(data, list(overrides or []))
    where = str(path) if path else "config"
    renamed = getattr(cls, "RENAMED", None)
    if renamed:
        from reidkit.engine.recipe import refuse_renamed
        refuse_renamed(data, where, renamed)
    cfg = from_dict(cls, data, where=where)
    if hasattr(cfg, "check_recipe"):
        cfg.check_recipe()
    return cfg


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    if path.resolve() in chain:
        names = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ConfigError(f"{path}: _base_ includes itself ({names})")
    chain = (*chain, path.resolve())
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("_base_", None)
    if base:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: _base_ must be a file name, got {base!r}")
        data = _merge(_read_yaml((path.parent / base).resolve(), chain), data)
    return data


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and tuples stay values)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def _same_value(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str) and a and b:  # the same folder, written two ways
        pa, pb = Path(a).expanduser(), Path(b).expanduser()
        if pa.exists() or pb.exists():
            return pa.resolve() == pb.resolve()
    return False


def recipe_diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``[(key, old value, new value)]`` of two flattened recipes; paths compare resolved."""
    keys = list(old) + [k for k in new if k not in old]
    return [(k, old.get(k), new.get(k)) for k in keys if not _same_value(old.get(k), new.get(k))]


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically), so a run can be diffed and repeated."""
    from reidkit.utils.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
