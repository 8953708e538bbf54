"""CIFAR-10, airbench-class recipe with noise in two squares: the base model for
masked-noise double masking.

Run (data as for ``cifar10_airbench.py``)::

    python -m train --config train/configs/cifar10_airbench_noise_squares.py \
        --workdir benchmarks/checkpoints/cifar10_airbench_noise_squares

``cifar10_airbench.py`` in everything but the augmentation: noise of sigma 7 in
the union of two 9x9 squares at independent uniform positions, not clipped, as
``mrs_jax.smoothed_double_masking`` draws it over the union of two PatchCleanser
masks (``patchcleanser_masks((32, 32), 5, 6)``; ``cifar10_cpu_noise_squares.py``
for the older recipe, which fine-tuned instead of training from scratch).
``noisy_accuracy`` in ``metrics.jsonl`` is the accuracy under this augmentation
on the fixed 2,000 test images.
Smoke: add ``--smoke`` (synthetic 32x32 data, tiny network, two steps).
"""

from pathlib import Path

from mrs_jax.configs import _twins
from mrs_jax.core import configfile
from mrs_jax.training import TrainConfig

BASE = Path(__file__).with_name("cifar10_airbench.py")


def get_config(smoke: bool = False) -> TrainConfig:
    return configfile.derive(
        BASE,
        smoke,
        TrainConfig,
        **_twins.NOISE_SQUARES,
    )
