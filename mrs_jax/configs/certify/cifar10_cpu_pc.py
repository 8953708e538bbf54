"""PatchCleanser double masking on CIFAR-10 (5x5 patch), beside MRS.

Run on the model trained with masked noise, and on the one trained with
occlusion masks (``train/configs/cifar10_cpu_occlusion.py``, the fair model
for PatchCleanser), on the same 200 test images as ``cifar10_cpu.py``'s
``--num_images 200`` runs (same ``image_seed``)::

    python -m certify --config certify/configs/cifar10_cpu_pc.py \
        --checkpoint benchmarks/checkpoints/cifar10_cpu --out runs/cifar10_pc
    python -m certify --config certify/configs/cifar10_cpu_pc.py \
        --checkpoint runs/cifar10_cpu_occlusion --out runs/cifar10_pc_occlusion
    python -m certify.analyze runs/cifar10_practical runs/cifar10_pc ...

The certificate holds for every 5x5 patch position and content in the image
(deterministic: no noise, no alpha, no radius). k = 6 masks per axis as in the
PatchCleanser paper: 36 masks of 9x9 pixels (stride 5), at most
36 * 37 / 2 = 666 masked images per test image, in device batches of 256.
Masked pixels are filled with 0.5 grey, the normalisation mean of the
``(x - 0.5) / s`` models (PatchCleanser fills with the mean). ``sigma``,
``n0``, ``n`` and ``alpha`` are unused here; they are kept equal to
``cifar10_cpu.py``'s so run.json shows one protocol. Data: CIFAR-10 JPEG
class folders (or ``cifar-10-batches-py``) in ``data/cifar10``.
"""

import dataclasses
from pathlib import Path

from mrs_jax.configs import _smoke
from mrs_jax.core import configfile
from mrs_jax.job import JobConfig

# The paper's protocol (cifar10.py) with cifar10_cpu.py's data and n; its attack
# fields are unused here. The smoke variant shrinks this config (not the base's
# smoke variant): synthetic data, two images, smaller batches.
BASE = Path(__file__).with_name("cifar10.py")
SMOKE = dict(**_smoke.CERTIFY_SYNTHETIC_CIFAR10, num_images=2, pc_batch_size=64)


def get_config(smoke: bool = False) -> JobConfig:
    config = configfile.derive(
        BASE,
        False,
        JobConfig,
        mode="double_masking",
        data_dir="data/cifar10",
        num_images=200,
        n=10_000,
        pc_k=6,
        pc_fill=0.5,
        pc_batch_size=256,
    )
    return dataclasses.replace(config, **SMOKE) if smoke else config
