"""The adaptive attack on the whole defence, CIFAR-10 (5x5 patch, sigma 7).

``cifar10_cpu.py``'s protocol (K = 80 locations x 20 sign steps of 0.1, Telea
localiser, dilation 3, CERTIFY with n0 = 100, n = 10,000, alpha = 0.001) with
``mrs_jax.adaptive_patch_attack`` in place of ``patch_attack``: the patch is
optimised against the base classifier, against harmonic fills of blocks that
overlap it in part (so that the prediction map stops singling it out) and against
the smoothing noise inside the mask that localisation returns when it finds the
patch (``eot_inpaint_noise``: the strongest variant on digits, RESULTS.md,
Attacks), with 4 fills and 2 noise draws per location and step. Run on the first 50 of
the practical run's images (same ``image_seed``, so the same images in the same
order)::

    python -m certify --config certify/configs/cifar10_cpu_adaptive.py \
        --checkpoint benchmarks/checkpoints/cifar10_cpu \
        --out benchmarks/runs/cifar10_adaptive

Each step costs seven forward-backward passes per location instead of one (the
base term, 4 fills, 2 noise draws), so an image takes about seven times as long to
attack as in the practical run: 50 images, not 500. Data: CIFAR-10 JPEG class
folders (or ``cifar-10-batches-py``) in ``data/cifar10``. Smoke: add ``--smoke``.
"""

from pathlib import Path

from mrs_jax.core import configfile
from mrs_jax.job import JobConfig

# Everything but the attack comes from cifar10_cpu.py: same defence, same images.
BASE = Path(__file__).with_name("cifar10_cpu.py")
# The attack, with the objective that was strongest on digits (digits_adaptive.py
# runs it too).
ATTACK = dict(
    mode="adaptive",
    adaptive_objective="eot_inpaint_noise",
    adaptive_occlusions=4,
    adaptive_noise_draws=2,
)


def get_config(smoke: bool = False) -> JobConfig:
    return configfile.derive(
        BASE, smoke, JobConfig, num_images=2 if smoke else 50, **ATTACK
    )
