"""`cfs run`: the whole workflow on a tiny synthetic benchmark with micro models."""
import yaml

from reidkit.methods import cfs
from reidkit.workflows import cfs as cfs_workflow

# a micro DINO recipe that trains in seconds on CPU
MICRO_PRETRAIN = {"precision": "fp32", "device": "cpu", "log_every": 1,
                  "data": {"batch_size": 8, "num_workers": 0},
                  "crops": {"global_size": [64, 32], "local_size": [32, 16], "local_crops_number": 2},
                  "model": {"preset": "vit_micro"}, "head": {"out_dim": 32, "hidden_dim": 32, "bottleneck_dim": 16},
                  "solver": {"epochs": 1, "warmup_epochs": 1}}


def test_cfs_run_end_to_end_and_rerun_reuses_steps(tmp_path):
    from reidkit.data.synth import SynthConfig, generate

    synth = tmp_path / "synth"
    generate(SynthConfig(domains=1, train_ids=8, test_ids=4, cameras=2, distractors=0, junk=0, pool_size=24,
                         height=64, width=32), synth, progress=False)
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(MICRO_PRETRAIN))
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump({
        "data": {"root": str(synth / "city_a"), "size": [64, 32], "batch_size": 16, "num_instances": 4,
                 "num_workers": 0, "pad": 2},
        "model": {"preset": "vit_micro"},
        "solver": {"epochs": 1, "warmup_epochs": 0, "optimizer": "adamw", "lr": 1e-3},
        "eval": {"enabled": False}, "device": "cpu"}))
    cfg = cfs_workflow.CFSConfig(output=str(tmp_path / "run"), pool=str(synth / "pool"), source_pretrain="pre.yaml",
                                 target_finetune="ft.yaml", num_workers=0, shard_size=10)
    out = cfs_workflow.run(cfg, config_dir=tmp_path)
    names, values = cfs.read_scores(out / "scores.tsv")
    assert len(names) == 24 and all(-1 <= v <= 1 for v in values)
    for name in ("cfs_list.txt", "random_list.txt"):
        kept = [x for x in (out / name).read_text().splitlines() if not x.startswith("#")]
        assert len(kept) == 12
    assert (out / "source" / "last.safetensors").is_file() and (out / "target" / "summary.json").is_file()
    before = (out / "source" / "last.pt").stat().st_mtime_ns, (out / "target" / "last.pt").stat().st_mtime_ns
    cfs_workflow.run(cfg, config_dir=tmp_path)  # finished steps are reused, not retrained
    assert before == ((out / "source" / "last.pt").stat().st_mtime_ns, (out / "target" / "last.pt").stat().st_mtime_ns)
