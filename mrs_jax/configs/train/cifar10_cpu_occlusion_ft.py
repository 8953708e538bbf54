"""CIFAR-10 on a 2-core CPU: the noise-squares fine-tune with grey squares instead,
PatchCleanser's twin of ``cifar10_cpu_noise_squares.py``.

Run (data as for ``cifar10_cpu.py``)::

    python -m train --config train/configs/cifar10_cpu_occlusion_ft.py \
        --workdir benchmarks/checkpoints/cifar10_cpu_occlusion_ft \
        --init_from benchmarks/checkpoints/cifar10_cpu

Everything as in ``cifar10_cpu_noise_squares.py`` (the masked-noise model as the
start, 3 epochs, peak learning rate 0.02, two 9x9 squares at independent uniform
positions) except what fills the squares: 0.5 grey, PatchCleanser's fill
(``augmentation="occlusion"``), not noise. So PatchCleanser on this model and
masked-noise double masking on that one differ only in the fill, in training and
at inference; ``cifar10_cpu_occlusion.py`` (9 epochs from scratch) is a weaker
start. ``noisy_accuracy`` in ``metrics.jsonl`` is the accuracy with two grey
squares. Smoke: add ``--smoke``.
"""

from pathlib import Path

from mrs_jax.core import configfile
from mrs_jax.training import TrainConfig

TWIN = Path(__file__).with_name("cifar10_cpu_noise_squares.py")


def get_config(smoke: bool = False) -> TrainConfig:
    return configfile.derive(
        TWIN, smoke, TrainConfig, augmentation="occlusion", occlusion_fill=0.5
    )
