"""CIFAR-10 on a 2-core CPU: the paper's noise, a small fast network, 9 epochs.

Run (data: the CIFAR-10 JPEG class folders or ``cifar-10-batches-py`` under
``data/cifar10``, or edit ``data_dir``)::

    python -m train --config train/configs/cifar10_cpu.py \
        --workdir benchmarks/checkpoints/cifar10_cpu

Noise: sigma = 7 in [0, 1] pixel units inside squares of width 5..10 at uniform
positions, after random flips and 4-pixel-padded crops: the paper's CIFAR-10
setting (MRS_SPEC section 7). The model clips its input to [0, 1] before
normalising (``clamp``, see ``mrs_jax.models.normalize.Normalize``): without it the
std-7 noise swamps BatchNorm's statistics. ``fast_cnn`` is an airbench-style
network with widths that are multiples of 16 (AVX-512 lanes) and batch 64: on this
2-core CPU a step of 64 costs 0.40 s (311 s an epoch) where one of 256 costs 2.5 s
(485 s an epoch), and widths (28, 56, 112, 224) were slower than (32, 64, 128, 256)
at every batch (``benchmarks/RESULTS.md`` section 7 has the table, the measured
training time and the accuracies on the whole test set). Each epoch evaluates on
a fixed random 2,000 test images; ``benchmarks/bench_train.py`` evaluates the
whole test set. ResNet-110 at the paper's scale stays in ``cifar10.py`` for users
with a GPU.
Smoke: add ``--smoke`` (synthetic 32x32 data, tiny network, two steps).
"""

import dataclasses

from mrs_jax.training import TrainConfig

WIDTHS = (32, 64, 128, 256)


def get_config(smoke: bool = False) -> TrainConfig:
    config = TrainConfig(
        dataset="cifar10",
        data_dir="data/cifar10",
        model="fast_cnn",
        model_kwargs=(("widths", WIDTHS), ("clamp", True)),
        num_classes=10,
        epochs=9,
        batch_size=64,
        learning_rate=0.05,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=0.5,
        label_smoothing=0.1,
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
