"""UDA as a workflow: the source model is trained first from its recipe (source.config), reused on a
rerun, then adapted; `adapt()` itself (a method, a leaf) never trains another method's model."""
import pytest
import yaml

from reidkit.config import load_config
from reidkit.data.synth import SynthConfig, generate
from reidkit.methods.adapt import AdaptConfig, AdaptError, adapt
from reidkit.workflows.uda import adapt_with_source


@pytest.mark.slow
def test_source_stage_then_adaptation_and_reuse(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    synth = generate(SynthConfig(domains=2, train_ids=8, test_ids=5, cameras=3, distractors=4, junk=2, pool_size=0,
                                 height=64, width=32), tmp_path / "synth", progress=False)
    (tmp_path / "source.yaml").write_text(yaml.safe_dump({
        "data": {"root": str(synth.domains[0]), "size": [64, 32], "batch_size": 8, "num_workers": 0},
        "model": {"preset": "vit_micro"}, "solver": {"epochs": 1, "warmup_epochs": 0, "lr": 0.01},
        "eval": {"enabled": False}, "device": "cpu"}))
    cfg = load_config(AdaptConfig, None, [
        "mode=uda", f"source.config={tmp_path / 'source.yaml'}", f"data.root={synth.domains[1]}",
        "data.size=[64,32]", "data.batch_size=16", "data.num_instances=4", "data.num_workers=0",
        "model.preset=vit_micro", "cluster.k1=8", "cluster.k2=3", "cluster.eps=0.7", "cluster.min_samples=2",
        "solver.epochs=1", "solver.iters=2", "eval.enabled=false", f"output={tmp_path / 'uda'}"])
    with pytest.raises(AdaptError, match="trained by the UDA workflow"):
        adapt(cfg)  # the method alone does not run the source stage
    said = []
    run = adapt_with_source(cfg, say=said.append)
    assert (run / "source" / "summary.json").is_file() and (run / "last.pt").is_file()
    assert load_config(AdaptConfig, run / "config.yaml").source.model == str(run / "source" / "last.safetensors")
    assert any("supervised training on the source" in s for s in said)
    said.clear()
    adapt_with_source(load_config(AdaptConfig, run / "config.yaml", ["solver.epochs=2", "source.model=null"]),
                      resume=True, say=said.append)
    assert any("source model already trained" in s for s in said)
