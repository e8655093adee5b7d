"""The training engine under ``pretrain``, ``train`` and ``adapt``: what every training loop needs and
no method owns.

    recipe.py       the shared recipe vocabulary (output, seed, device, precision, ...) and typed model
                    knobs; torch-free, so a bad recipe fails before torch is imported
    distributed.py  device and DDP set-up (torchrun; NCCL on CUDA, gloo on CPU)
    precision.py    autocast dtype, GradScaler for fp16, the one place a batch goes to the device
    run.py          the run folder: config.yaml, resume (with the recipe diff), NaN guard, atomic checksummed
                    training state, log.csv/TensorBoard, progress with ETA, evaluate-every-N and keep-best
    evaluate.py     query/gallery evaluation of a model during training

A method module (``reidkit.methods.finetune``, ``pretrain_dino``, ``adapt``) keeps its recipe, its loss,
its ``train_one_epoch`` and a short main loop that calls these. This package imports nothing at
package level, so ``reidkit.engine.recipe`` stays importable without torch.
"""
