"""The adaptive attack on the whole defence, digits (5x5 patch, sigma 3).

``digits.py``'s settings (the demo's: 30 images, K = 80 locations x 10 sign steps
of 0.2, Telea localiser, dilation 3, CERTIFY with n0 = 100, n = 10,000, alpha =
0.001) with ``mrs_jax.adaptive_patch_attack`` in place of ``patch_attack``, with
the objective that was strongest on digits (``eot_inpaint_noise``, RESULTS.md
section 11) and ``cifar10_cpu_adaptive.py``'s budget (4 fills, 2 noise draws per
location and step). Same images in the same order as ``digits.py``, so the two
runs compare image by image::

    python -m certify --config certify/configs/digits.py --checkpoint runs/digits \
        --out runs/digits_practical
    python -m certify --config certify/configs/digits_adaptive.py \
        --checkpoint runs/digits --out runs/digits_adaptive
    python benchmarks/attack_comparison.py runs/digits_practical runs/digits_adaptive

Smoke: add ``--smoke``.
"""

from pathlib import Path

from mrs_jax.configs.certify import cifar10_cpu_adaptive
from mrs_jax.core import configfile
from mrs_jax.job import JobConfig

# Everything but the attack comes from digits.py: same defence, same images; the
# attack is cifar10_cpu_adaptive.py's.
BASE = Path(__file__).with_name("digits.py")


def get_config(smoke: bool = False) -> JobConfig:
    return configfile.derive(BASE, smoke, JobConfig, **cifar10_cpu_adaptive.ATTACK)
