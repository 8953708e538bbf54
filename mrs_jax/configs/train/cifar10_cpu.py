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
at every batch (``benchmarks/RESULTS.md``, Training, has the table, the measured
training time and the accuracies on the whole test set). Each epoch evaluates on
a fixed random 2,000 test images; ``benchmarks/bench_train.py`` evaluates the
whole test set. ResNet-110 at the paper's scale stays in ``cifar10.py`` for users
with a GPU.
Smoke: add ``--smoke`` (synthetic 32x32 data, tiny network, two steps).
"""

from pathlib import Path

from mrs_jax.core import configfile
from mrs_jax.training import TrainConfig

# The data, noise, flips and crops of cifar10.py (the paper's); the network and
# its schedule are the CPU's.
BASE = Path(__file__).with_name("cifar10.py")
WIDTHS = (32, 64, 128, 256)
SCHEDULE = dict(
    learning_rate=0.05,
    weight_decay=5e-4,
    schedule="cosine",
    warmup_epochs=0.5,
    label_smoothing=0.1,
)
# A smoke run keeps the base's sizes (one epoch, two steps of 8).
CPU_SCALE = dict(
    data_dir="data/cifar10",
    model="fast_cnn",
    model_kwargs=(("widths", WIDTHS), ("clamp", True)),
    epochs=9,
    batch_size=64,
    max_eval_examples=2000,
)
SMOKE_MODEL = dict(model="fast_cnn_tiny", model_kwargs=(("clamp", True),))


def get_config(smoke: bool = False) -> TrainConfig:
    return configfile.derive(
        BASE,
        smoke,
        TrainConfig,
        **SCHEDULE,
        **(SMOKE_MODEL if smoke else CPU_SCALE),
    )
