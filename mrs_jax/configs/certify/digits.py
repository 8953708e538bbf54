"""MRS on the embedded digits (32x32x3) with a 5x5 patch: the demo's settings.

Run: ``python -m certify --config certify/configs/digits.py --checkpoint runs/digits
--out runs/certify_digits`` (add ``--smoke`` for the tiny variant).

n = 10,000 rather than the paper's 100,000, 30 images and 10 PGD steps of 0.2 keep
the whole demo (training included) within 10 minutes on a 2-core CPU; batches of
128 count ~2x faster than 1000 on that CPU (benchmarks/RESULTS.md, Speed:
counting samples per second).
sigma must match the noise the checkpoint was trained with (the demo takes it
from the checkpoint).
"""

import dataclasses

from mrs_jax.configs import _smoke
from mrs_jax.job import JobConfig


def get_config(smoke: bool = False) -> JobConfig:
    config = JobConfig(
        mode="practical",
        dataset="digits",
        split="test",
        num_images=30,
        patch_size=5,
        num_locations=80,
        attack_steps=10,
        attack_step_size=0.2,
        dilation=3,
        inpaint_method="telea",
        sigma=3.0,
        n0=100,
        n=10_000,
        alpha=0.001,
        batch_size=128,
    )
    if smoke:
        config = dataclasses.replace(config, **_smoke.CERTIFY_FEW)
    return config
