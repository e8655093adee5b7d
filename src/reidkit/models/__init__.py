"""Models: ReID vision transformers on timm (patchify / conv / ICS stems, k-NN attention, SIE),
CNN baselines, the BNNeck head, foreign checkpoints and our own model files.

    from reidkit.models import build_model, save_model, load_model
    model = build_model("vit_small_ics", num_classes=751)
    save_model(model, "model.safetensors"); model = load_model("model.safetensors")
"""
from reidkit.models.model_file import ModelFileError, load_model, read_model_config, save_model
from reidkit.models.presets import PRESETS, ModelConfigError, ModelSpec
from reidkit.models.reid_model import ReIDModel, build_model

__all__ = ["build_model", "save_model", "load_model", "read_model_config", "ReIDModel", "ModelSpec",
           "PRESETS", "ModelConfigError", "ModelFileError"]
