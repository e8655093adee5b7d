"""`cfs run`: the whole workflow on a tiny synthetic benchmark with micro models."""
import yaml

from reidkit.config import to_dict
from reidkit.methods import cfs


def test_cfs_run_end_to_end_and_rerun_reuses_steps(tmp_path, micro_config):
    from reidkit.data.synth import SynthConfig, generate

    synth = tmp_path / "synth"
    generate(SynthConfig(domains=1, train_ids=8, test_ids=4, cameras=2, distractors=0, junk=0, pool_size=24,
                         height=64, width=32), synth, progress=False)
    pcfg = micro_config(synth / "pool", tmp_path / "ignored", **{"solver.epochs": 1, "data.batch_size": 8})
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(to_dict(pcfg)))
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump({
        "data": {"root": str(synth / "city_a"), "size": [64, 32], "batch_size": 16, "num_instances": 4,
                 "num_workers": 0, "pad": 2},
        "model": {"preset": "vit_micro"},
        "solver": {"epochs": 1, "warmup_epochs": 0, "optimizer": "adamw", "lr": 1e-3},
        "eval": {"enabled": False}, "train": {"device": "cpu"}}))
    cfg = cfs.CFSConfig(output_dir=str(tmp_path / "run"), pool=str(synth / "pool"), source_pretrain="pre.yaml",
                        target_finetune="ft.yaml", num_workers=0, shard_size=10)
    out = cfs.run(cfg, config_dir=tmp_path)
    names, values = cfs.read_scores(out / "scores.tsv")
    assert len(names) == 24 and all(-1 <= v <= 1 for v in values)
    for name in ("cfs_list.txt", "random_list.txt"):
        kept = [x for x in (out / name).read_text().splitlines() if not x.startswith("#")]
        assert len(kept) == 12
    assert (out / "source" / "last.safetensors").is_file() and (out / "target" / "summary.json").is_file()
    before = (out / "source" / "last.pt").stat().st_mtime_ns, (out / "target" / "last.pt").stat().st_mtime_ns
    cfs.run(cfg, config_dir=tmp_path)  # finished steps are reused, not retrained
    assert before == ((out / "source" / "last.pt").stat().st_mtime_ns, (out / "target" / "last.pt").stat().st_mtime_ns)
