"""The training recipes: typed dataclasses <-> YAML, torch-free.

    finetune.py   ``reidkit train``     FinetuneConfig
    pretrain.py   ``reidkit pretrain``  PretrainConfig
    adapt.py      ``reidkit adapt``     AdaptConfig
    distill.py    ``reidkit distill``   DistillConfig

They load and check without importing torch or reading data, so a typo, a missing file or a bad value
fails within the start-up time of the command. Each method module (``reidkit.methods.*``) re-exports
its recipe; the shared vocabulary is ``reidkit.engine.recipe``.
"""
