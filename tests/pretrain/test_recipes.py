"""Every shipped pre-training / CFS recipe loads into its typed config, with the paper's values."""
from pathlib import Path

import pytest

from reidkit.config import load_config
from reidkit.workflows.cfs import CFSConfig
from reidkit.methods.finetune import FinetuneConfig
from reidkit.methods.pretrain_dino import PretrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "pretrain"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_recipe_loads(path):
    from reidkit.methods.pretrain_coke import CoKeConfig
    from reidkit.methods.pretrain_look import LOOKConfig
    from reidkit.recipes.pretrain import recipe_method

    cls = CFSConfig if path.name.startswith("cfs_lup") or path.name == "cfs_synth_tiny.yaml" else \
        FinetuneConfig if path.name.startswith("cfs_target") else \
        {"dino": PretrainConfig, "coke": CoKeConfig, "look": LOOKConfig}[recipe_method(path)]
    cfg = load_config(cls, path)
    if isinstance(cfg, CFSConfig):
        for recipe in (cfg.source_pretrain, cfg.target_finetune):
            assert (path.parent / recipe).is_file(), recipe


def test_paper_recipes_values():
    s = load_config(PretrainConfig, CONFIGS / "lup_vit_small.yaml")
    assert (s.data.batch_size, s.solver.epochs, s.solver.lr, s.head.out_dim, s.crops.local_crops_number) == \
        (64, 100, 5e-4, 65536, 8)
    assert s.crops.global_size == (256, 128) and s.crops.local_size == (128, 64)
    assert s.solver.weight_decay == 0.04 and s.solver.weight_decay_end == 0.4 and s.solver.momentum_teacher == 0.996
    b = load_config(PretrainConfig, CONFIGS / "lup_vit_base_ics_cfs.yaml")
    assert b.model.preset == "vit_base_ics" and b.data.keep_num == 2508146 and b.data.list_file.endswith(".pkl")
    assert load_config(PretrainConfig, CONFIGS / "lup_vit_small_cfs_proxy.yaml").solver.epochs == 20


def test_coke_and_look_paper_recipes_values():
    from reidkit.methods.pretrain_coke import CoKeConfig
    from reidkit.methods.pretrain_look import LOOKConfig

    c = load_config(CoKeConfig, CONFIGS / "coke_lup_vit_small.yaml")
    assert c.coke.num_clusters == [3000, 4000, 5000] and c.coke.min_size_ratio == 0.4 and c.coke.dual_lr == 20.0
    assert (c.coke.temperature, c.head.out_dim, c.data.num_views, c.solver.epochs) == (0.1, 128, 1, 100)
    lk = load_config(LOOKConfig, CONFIGS / "look_msmt17_vit_small.yaml")
    assert (lk.data.format, lk.look.k, lk.look.temperature, lk.objective) == ("msmt17", 200, 0.07, "look")
