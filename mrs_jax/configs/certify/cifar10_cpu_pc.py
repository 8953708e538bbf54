"""PatchCleanser double masking on CIFAR-10 (5x5 patch), beside MRS (issue 12).

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

from mrs_jax.job import JobConfig


def get_config(smoke: bool = False) -> JobConfig:
    config = JobConfig(
        mode="double_masking",
        dataset="cifar10",
        data_dir="data/cifar10",
        split="test",
        num_images=200,
        patch_size=5,
        pc_k=6,
        pc_fill=0.5,
        pc_batch_size=256,
        sigma=7.0,
        n0=100,
        n=10_000,
        alpha=0.001,
    )
    if smoke:
        config = dataclasses.replace(
            config,
            dataset="synthetic",
            data_dir=None,
            num_images=2,
            pc_batch_size=64,
            synthetic_shape=(32, 32, 3),
            synthetic_classes=10,
        )
    return config
