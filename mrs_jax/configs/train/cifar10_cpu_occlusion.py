"""CIFAR-10 on a 2-core CPU with occlusion masks: a fair base model for PatchCleanser.

Run (data as for ``cifar10_cpu.py``: the CIFAR-10 JPEG class folders or
``cifar-10-batches-py`` under ``data/cifar10``, or edit ``data_dir``)::

    python -m train --config train/configs/cifar10_cpu_occlusion.py \
        --workdir benchmarks/checkpoints/cifar10_cpu_occlusion

``cifar10_cpu.py``'s network, schedule, flips and crops (9 epochs),
but each training image gets PatchCleanser's occlusion instead of masked noise
(Xiang et al. 2022): two squares of side 9 at independent uniform
positions, filled with 0.5 grey, no Gaussian noise. 9 is the mask width of
``mrs_jax.patchcleanser_masks((32, 32), 5, 6)`` (5x5 patch, k = 6 masks per axis)
and 0.5 is ``double_masking``'s default ``fill``, so the model is trained on the
two-mask images that double masking classifies. ``sigma``, ``w_min`` and ``w_max``
are unused with ``augmentation="occlusion"``; they keep ``cifar10_cpu.py``'s values
so that the two configs differ only in the augmentation fields. So the top-level
``sigma`` in this run's ``model.json`` does not describe the model: its
``config.augmentation`` does. ``clamp`` is kept too (harmless: occluded images stay
in [0, 1]). ``noisy_accuracy`` in ``metrics.jsonl`` is the accuracy on test images
with two such squares (occluded accuracy), on a fixed random 2,000 per epoch.
Smoke: add ``--smoke`` (synthetic 32x32 data, tiny network, two steps).
"""

from pathlib import Path

from mrs_jax.configs import _twins
from mrs_jax.core import configfile
from mrs_jax.training import TrainConfig

# Everything but the augmentation comes from cifar10_cpu.py, so the two models
# differ only in what they were trained to withstand.
BASE = Path(__file__).with_name("cifar10_cpu.py")


def get_config(smoke: bool = False) -> TrainConfig:
    return configfile.derive(
        BASE,
        smoke,
        TrainConfig,
        **_twins.GREY_SQUARES,
    )
