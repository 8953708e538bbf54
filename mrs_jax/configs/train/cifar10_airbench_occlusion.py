"""CIFAR-10, airbench-class recipe with occlusion: PatchCleanser's fair base model.

Run (data as for ``cifar10_airbench.py``)::

    python -m train --config train/configs/cifar10_airbench_occlusion.py \
        --workdir benchmarks/checkpoints/cifar10_airbench_occlusion

``cifar10_airbench.py`` in everything (network, schedule, whitening, lookahead,
flips, translations, 10 epochs) but the augmentation: each training image gets
two grey (0.5) squares of side 9 at independent uniform positions and no
noise, the two-mask images that PatchCleanser's double masking classifies
(``patchcleanser_masks((32, 32), 5, 6)``; as ``cifar10_cpu_occlusion.py`` does
for the older recipe). ``sigma``, ``w_min`` and ``w_max`` are unused with
``augmentation="occlusion"``. ``noisy_accuracy`` in ``metrics.jsonl`` is the
occluded accuracy on the fixed 2,000 test images.
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
        **_twins.GREY_SQUARES,
    )
