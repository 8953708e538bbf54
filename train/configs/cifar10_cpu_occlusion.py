"""CIFAR-10 on a 2-core CPU with occlusion masks: a fair base model for PatchCleanser.

Run (data as for ``cifar10_cpu.py``: the CIFAR-10 JPEG class folders or
``cifar-10-batches-py`` under ``data/cifar10``, or edit ``data_dir``)::

    python -m train --config train/configs/cifar10_cpu_occlusion.py \
        --workdir benchmarks/checkpoints/cifar10_cpu_occlusion

``cifar10_cpu.py``'s network, schedule, flips and crops (8 epochs, under an hour),
but each training image gets PatchCleanser's occlusion instead of masked noise
(Xiang et al. 2022; issue 12): two squares of side 9 at independent uniform
positions, filled with 0.5 grey, no Gaussian noise. 9 is the mask width of
``mrs_jax.patchcleanser_masks((32, 32), 5, 6)`` (5x5 patch, k = 6 masks per axis)
and 0.5 is ``double_masking``'s default ``fill``, so the model is trained on the
two-mask images that double masking classifies. ``sigma``, ``w_min`` and ``w_max``
are unused with ``augmentation="occlusion"``; they keep ``cifar10_cpu.py``'s values
so that the two configs differ only in the augmentation fields. So the top-level
``sigma`` in this run's ``model.json`` does not describe the model: its
``config.augmentation`` does. ``clamp`` is kept too (harmless: occluded images stay
in [0, 1]). ``noisy_accuracy`` in ``metrics.jsonl`` is the accuracy on test images
with two such squares (occluded accuracy), on the first 2,000 test images per epoch.
Smoke: add ``--smoke`` (synthetic 32x32 data, tiny network, two steps).
"""

import dataclasses

from mrs_jax.training import TrainConfig

WIDTHS = (28, 56, 112, 224)


def get_config(smoke: bool = False) -> TrainConfig:
    config = TrainConfig(
        dataset="cifar10",
        data_dir="data/cifar10",
        model="fast_cnn",
        model_kwargs=(("widths", WIDTHS), ("clamp", True)),
        num_classes=10,
        epochs=8,
        batch_size=256,
        learning_rate=0.2,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=0.5,
        augmentation="occlusion",
        occlusion_size=9,
        occlusion_squares=2,
        occlusion_fill=0.5,
        sigma=7.0,
        w_min=5,
        w_max=10,
        flip_crop=True,
        max_eval_examples=2000,
        eval_batch_size=500,
        keep_checkpoints=2,
    )
    if smoke:
        config = dataclasses.replace(
            config,
            dataset="synthetic",
            data_dir=None,
            model="fast_cnn_tiny",
            model_kwargs=(("clamp", True),),
            image_shape=(32, 32, 3),
            synthetic_examples=32,
            epochs=1,
            batch_size=8,
            max_steps_per_epoch=2,
            max_eval_examples=8,
            eval_batch_size=8,
        )
    return config
