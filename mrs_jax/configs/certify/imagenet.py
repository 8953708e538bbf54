"""MRS on ImageNet (224x224) with a 32x32 patch, the paper's settings (Fig. 2d).

Run: ``python -m certify --config certify/configs/imagenet.py --checkpoint
runs/imagenet --out runs/certify_imagenet``. Needs imagenet2012 prepared for
tensorflow-datasets (it cannot be downloaded automatically).

Paper: 500 random validation images, n0 = 100, n = 100,000, alpha = 0.001,
sigma = 257 in [0, 1] pixel l2 units. The smoke variant runs on small synthetic
data with an 8x8 patch.
"""

import dataclasses

from mrs_jax.configs import _smoke
from mrs_jax.job import JobConfig

# The smoke run's synthetic 48x48 images, 8x8 patch and smaller batches.
SMOKE = dict(
    dataset="synthetic",
    split="test",
    patch_size=8,
    batch_size=32,
    localize_batch_size=64,
    synthetic_shape=(48, 48, 3),
    synthetic_classes=1000,
)


def get_config(smoke: bool = False) -> JobConfig:
    config = JobConfig(
        mode="practical",
        dataset="imagenet2012",
        split="validation",
        num_images=500,
        patch_size=32,
        num_locations=80,
        attack_steps=50,
        attack_step_size=0.05,
        dilation=3,
        localize_batch_size=512,
        sigma=257.0,
        n0=100,
        n=100_000,
        alpha=0.001,
        batch_size=256,
    )
    if smoke:
        config = dataclasses.replace(config, **(_smoke.CERTIFY_FEW | SMOKE))
    return config
