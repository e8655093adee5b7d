"""The one recipe vocabulary: shared keys, old keys refused with their new name, typed model knobs and
bad values named before any data is read (issue 11 item 3, issue 16 item 15)."""
import dataclasses

import pytest

from reidkit.config import ConfigError, load_config
from reidkit.methods.adapt import AdaptConfig
from reidkit.methods.finetune import FinetuneConfig
from reidkit.methods.pretrain_dino import PretrainConfig

RECIPES = (FinetuneConfig, PretrainConfig, AdaptConfig)
SHARED = ("output", "seed", "device", "precision", "deterministic", "compile", "log_every")


@pytest.mark.parametrize("cls", RECIPES)
def test_every_recipe_speaks_the_same_vocabulary(cls):
    names = [f.name for f in dataclasses.fields(cls)]
    assert names[:len(SHARED)] == list(SHARED)
    cfg = load_config(cls, None, ["output=runs/x", "seed=3", "device=cpu", "precision=bf16", "log_every=2",
                                  "compile=false", "data.num_workers=0"])
    assert (cfg.output, cfg.seed, cfg.precision, cfg.data.num_workers) == ("runs/x", 3, "bf16", 0)
    assert {f.name for f in dataclasses.fields(cfg.model)} >= {"preset", "stem", "knn_k", "drop_path_rate",
                                                               "sie_cameras", "pool", "neck_feat", "img_size"}


@pytest.mark.parametrize("cls,old,new", [
    (FinetuneConfig, "train.seed=1", "`train.seed` is now `seed`"),
    (FinetuneConfig, "solver.amp=bf16", "`solver.amp` is now `precision"),
    (FinetuneConfig, "train.log_every=3", "`train.log_every` is now `log_every`"),
    (FinetuneConfig, "train.sync_bn=true", "`train.sync_bn` is now `model.sync_bn`"),
    (PretrainConfig, "output_dir=runs/x", "`output_dir` is now `output`"),
    (AdaptConfig, "train.extract_batch_size=64", "`train.extract_batch_size` is now `data.extract_batch_size`"),
    (AdaptConfig, "model.overrides={knn_k: 4}", "model.overrides was replaced by typed fields: model.stem"),
])
def test_old_keys_are_refused_with_their_new_name(cls, old, new):
    with pytest.raises(ConfigError, match=new.replace("(", r"\(")):
        load_config(cls, None, [old])


@pytest.mark.parametrize("cls,override,msg", [
    (FinetuneConfig, "data.num_instances=0", "data.num_instances=0 must be > 0"),
    (FinetuneConfig, "data.batch_size=0", "data.batch_size=0 must be > 0"),
    (AdaptConfig, "data.num_instances=0", "data.num_instances=0 must be > 0"),
    (PretrainConfig, "data.batch_size=0", "data.batch_size=0 must be > 0"),
    (FinetuneConfig, "solver.epochs=2.7", "solver.epochs: expected an integer, got 2.7"),
    (FinetuneConfig, "model.knn_k=0", "model.knn_k=0: give a key count >= 1"),
    (AdaptConfig, "model.knn_k=1.5", "model.knn_k=1.5: give a key count"),
    (PretrainConfig, "model.stem=convv", r"model.stem: 'convv' fits none of"),
    (FinetuneConfig, "model.pool=max", r"model.pool: 'max' fits none of"),
    (FinetuneConfig, "model.drop_path_rate=1.5", "model.drop_path_rate=1.5 must be in"),
    (FinetuneConfig, "precision=fp8", r"precision: 'fp8' is not one of"),
    (FinetuneConfig, "log_every=0", "log_every=0 must be >= 1"),
])
def test_bad_values_fail_at_load_with_the_key_named(cls, override, msg):
    """issue 16 item 15: num_instances=0 / batch_size=0 used to end in ZeroDivisionError during training."""
    with pytest.raises(ConfigError, match=msg):
        load_config(cls, None, [override])


def test_knn_knobs_keep_their_type():
    assert load_config(FinetuneConfig, None, ["model.knn_k=1.0"]).model.knn_k == 1.0
    assert type(load_config(FinetuneConfig, None, ["model.knn_k=1.0"]).model.knn_k) is float
    assert type(load_config(FinetuneConfig, None, ["model.knn_k=8"]).model.knn_k) is int


def test_a_bad_preset_fails_before_the_data_is_read(tmp_path):
    from reidkit.methods.finetune import train
    from reidkit.models.presets import ModelConfigError

    missing = tmp_path / "no_such_dataset"  # never read: the model check comes first
    cfg = load_config(FinetuneConfig, None, [f"data.root={missing}", "model.preset=vit_nonexistent",
                                             f"output={tmp_path / 'run'}", "device=cpu"])
    with pytest.raises(ModelConfigError, match="unknown model preset 'vit_nonexistent'"):
        train(cfg)
