"""CIFAR-10, the airbench-class recipe without the paper's noise: the ablation
row that says what the noise costs.

Run (data as for ``cifar10_airbench.py``)::

    python -m train --config train/configs/cifar10_airbench_no_noise.py \
        --workdir benchmarks/checkpoints/cifar10_airbench_no_noise

``cifar10_airbench.py`` in everything (network, schedule, whitening from the
training images, lookahead, flips, translations, 10 epochs) but ``sigma = 0``:
the masked-noise augmentation adds nothing, so each image is trained as it is.
Not a model to certify at sigma 7 (it never saw the noise); ``noisy_accuracy``
in ``metrics.jsonl`` is then the clean accuracy again.
Smoke: add ``--smoke`` (synthetic 32x32 data, tiny network, two steps).
"""

from pathlib import Path

from mrs_jax.core import configfile
from mrs_jax.training import TrainConfig

BASE = Path(__file__).with_name("cifar10_airbench.py")


def get_config(smoke: bool = False) -> TrainConfig:
    return configfile.derive(BASE, smoke, TrainConfig, sigma=0.0)
