"""Our own model files: one ``.safetensors`` holding the weights, with the model's JSON config in
the file's metadata, so that a model is rebuilt from the file alone (no pickle, no code).

Metadata keys: ``format = "reidkit.model/1"``, ``config`` (the :class:`ModelSpec` as JSON), and
any extra string entries the caller adds (e.g. the training run, the dataset).
"""
from __future__ import annotations

import json
from pathlib import Path

from reidkit.models.reid_model import ReIDModel

FORMAT = "reidkit.model/1"


class ModelFileError(ValueError):
    """A model file that is missing, not ours, or does not match its own config."""


def save_model(model: ReIDModel, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` atomically as safetensors + JSON config. Returns the path."""
    if not isinstance(model, ReIDModel):
        raise TypeError(f"save_model needs a ReIDModel, got {type(model).__name__}")
    return save_with_config(model, path, FORMAT, metadata)


def save_with_config(model, path: str | Path, fmt: str, metadata: dict[str, str] | None = None) -> Path:
    """Weights + ``model.config`` as JSON + the file ``format`` tag in one safetensors file, atomically
    (shared by image and video model files)."""
    from reidkit.utils.io import save_tensors

    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(format=fmt, config=json.dumps(model.config))
    return save_tensors(path, model.state_dict(), metadata=meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a model file (image or video; the weights are not read). ``ModelFileError`` when the
    file is missing or not safetensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for non-safetensors files
        raise ModelFileError(f"{path}: not a safetensors model file ({e})") from None


def load_weights_exactly(model, path: str | Path, map_location: str = "cpu"):
    """``model`` with the file's weights (every key, no other), moved to ``map_location``, in eval mode."""
    from reidkit.utils.io import load_tensors

    tensors, _ = load_tensors(path)
    result = model.load_state_dict(tensors, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelFileError(f"{path}: weights do not match the stored config: missing "
                             f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return model.to(map_location).eval()


def read_model_config(path: str | Path) -> dict:
    """The JSON config stored in a model file (without reading the weights)."""
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ModelFileError(
            f"{path}: no reidkit model config in this file (format {meta.get('format')!r}); "
            "for foreign checkpoints build a preset and use reidkit.models.checkpoints.load_weights")
    return json.loads(meta["config"])


def load_model(path: str | Path, map_location: str = "cpu") -> ReIDModel:
    """Rebuild a model from a file written by :func:`save_model`; returned in eval mode."""
    return load_weights_exactly(ReIDModel.from_config(read_model_config(path)), path, map_location)
