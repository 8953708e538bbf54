"""MRS on CIFAR-10 with a 5x5 patch, the paper's settings (Table 1, Fig. 2a).

Run: ``python -m certify --config certify/configs/cifar10.py --checkpoint
runs/cifar10 --out runs/certify_cifar10``. Needs CIFAR-10 prepared for
tensorflow-datasets, or ``data_dir`` pointing at a ``cifar-10-batches-py`` folder.

Paper: 500 random test images, n0 = 100, n = 100,000, alpha = 0.001, K = 80 attack
locations, sigma = 7 in [0, 1] pixel l2 units. The smoke variant runs on synthetic
CIFAR-shaped data.
"""

import dataclasses

from mrs_jax.configs import _smoke
from mrs_jax.job import JobConfig


def get_config(smoke: bool = False) -> JobConfig:
    config = JobConfig(
        mode="practical",
        dataset="cifar10",
        split="test",
        num_images=500,
        patch_size=5,
        num_locations=80,
        attack_steps=50,
        attack_step_size=0.05,
        dilation=3,
        sigma=7.0,
        n0=100,
        n=100_000,
        alpha=0.001,
        batch_size=1000,
    )
    if smoke:
        config = dataclasses.replace(
            config, **_smoke.CERTIFY_FEW, **_smoke.CERTIFY_SYNTHETIC_CIFAR10
        )
    return config
