"""export-backbone from our checkpoint and from the official DINO layout; the CLI commands."""
import argparse

import pytest
import torch
from typer.testing import CliRunner

from reidkit.cli.main import app
from reidkit.methods.pretrain_dino import export_backbone, infer_preset
from reidkit.models import build_model, load_model
from reidkit.models.dino_head import DINOHead
from reidkit.utils.checkpoint import load_state

runner = CliRunner()


def official_checkpoint(path, preset="vit_micro_ics"):
    """A raw DINO checkpoint.pth as TransReID-SSL writes it: ICS teacher and student under
    ``module.``, ``backbone.`` + ``head.`` keys, args as a Namespace, the loss centre."""
    torch.manual_seed(1)
    backbone = build_model(preset).backbone
    head = DINOHead(backbone.embed_dim, out_dim=16, hidden_dim=8, bottleneck_dim=4)
    sd = {f"module.backbone.{k}": v for k, v in backbone.state_dict().items()}
    sd.update({f"module.head.{k}": v for k, v in head.state_dict().items()})
    torch.save({"teacher": sd, "student": sd, "epoch": 100, "args": argparse.Namespace(arch="ours_vit_small"),
                "dino_loss": {"center": torch.zeros(1, 16)}}, path)
    return backbone


def test_export_official_layout_infers_ics_preset(tmp_path):
    backbone = official_checkpoint(tmp_path / "checkpoint.pth")
    out, report = export_backbone(tmp_path / "checkpoint.pth", tmp_path / "b.safetensors")
    model = load_model(out)
    assert model.spec.stem == "ics" and model.spec.embed_dim == 64
    for k, v in backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[k], v)
    assert any("DINO projection head" in r for r in report.dropped.values())


def test_infer_preset_from_tensors():
    assert infer_preset({"cls_token": torch.zeros(1, 1, 384)}) == "vit_small"
    assert infer_preset({"cls_token": torch.zeros(1, 1, 768), "patch_embed.conv.1.IN.weight": torch.zeros(32)}) \
        == "vit_base_ics"
    with pytest.raises(ValueError, match="--preset"):
        infer_preset({"x": torch.zeros(1)})


def test_cli_pretrain_export_and_resume_errors(pool, tmp_path, micro_config):
    import yaml

    from reidkit.config import to_dict

    cfg = micro_config(pool, tmp_path / "run", **{"solver.epochs": 1})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    r = runner.invoke(app, ["pretrain", str(tmp_path / "c.yaml"), "log_every=2", "--out", str(tmp_path / "r2")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r2" / "last.safetensors").is_file()
    r = runner.invoke(app, ["pretrain", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r2")])
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(app, ["pretrain", str(tmp_path / "c.yaml"), "solver.epochz=3"])
    assert r.exit_code == 2 and "epochz" in r.output

    r = runner.invoke(app, ["export-backbone", str(tmp_path / "r2" / "last.pt"), str(tmp_path / "e.safetensors"),
                            "--img-size", "96,32"])
    assert r.exit_code == 0, r.output
    model = load_model(tmp_path / "e.safetensors")
    assert tuple(model.spec.img_size) == (96, 32)
    teacher = load_state(tmp_path / "r2" / "last.pt")["teacher"]
    torch.testing.assert_close(model.backbone.blocks[0].attn.qkv.weight, teacher["backbone.blocks.0.attn.qkv.weight"])


def test_cli_cfs_score_select(pool, tmp_path):
    from reidkit.models import save_model

    torch.manual_seed(0)
    save_model(build_model("vit_micro"), tmp_path / "s.safetensors")
    save_model(build_model("vit_micro"), tmp_path / "t.safetensors")
    r = runner.invoke(app, ["cfs", "score", "--source", str(tmp_path / "s.safetensors"), "--target",
                            str(tmp_path / "t.safetensors"), "--images", str(pool), "--out", str(tmp_path / "s.tsv"),
                            "--workers", "0"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["cfs", "select", "--scores", str(tmp_path / "s.tsv"), "--keep-ratio", "0.5",
                            "--random", "--out", str(tmp_path / "l.txt")])
    assert r.exit_code == 0, r.output
    assert len([x for x in (tmp_path / "l.txt").read_text().splitlines() if not x.startswith("#")]) == 6
    r = runner.invoke(app, ["cfs", "score", "--source", str(tmp_path / "nope.safetensors"), "--target",
                            str(tmp_path / "t.safetensors"), "--images", str(pool)])
    assert r.exit_code == 2 and "nope.safetensors" in r.output
