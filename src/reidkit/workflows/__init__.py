"""Workflows: multi-stage flows above the training methods.

    uda.py    UDA's two stages: supervised training on the labelled source, then adaptation
    cfs.py    ``reidkit cfs run``: two proxy models (short DINO, then fine-tune), scores, subset lists
    demo.py   ``reidkit demo``: synthetic data -> baseline -> (DINO) -> fine-tune -> (UDA) -> report

A method module (``reidkit.methods.*``) never imports another method; the workflows do the chaining.
Workflows report progress through a ``say`` callback (the command line passes its console), so the
library never imports the CLI.
"""
