"""Masked-noise double masking on CIFAR-10 (5x5 patch), beside MRS and
PatchCleanser.

Run on the model fine-tuned with noise in two 9x9 squares
(``train/configs/cifar10_cpu_noise_squares.py``: the distribution each smoothed
classifier draws), on the first images of ``cifar10_cpu.py``'s order (same
``image_seed``)::

    python -m certify --config certify/configs/cifar10_cpu_sdm.py \
        --checkpoint benchmarks/checkpoints/cifar10_cpu_noise_squares \
        --out benchmarks/runs/cifar10_sdm

The masked-noise model (``benchmarks/checkpoints/cifar10_cpu``, noise in one
square of width 5..10) runs too, but certifies almost nothing: under two 9x9
noise squares over the object its label's share of draws falls to about 0
(``benchmarks/sdm_combination_shares.py``).

The certificate (``mrs_jax.smoothed_double_masking``) holds for every 5x5 patch
position and every patch content of l2 norm below the target radius, here
``"unrestricted"`` = 5 * sqrt(3) = 8.66, which is every content: PatchCleanser's
k = 6 covering set (36 masks of 9x9 pixels), the grey fill replaced by Gaussian
noise of sigma 7 inside each one- and two-mask union, each of the 666 smoothed
classifiers certified for the defended label by ``certify_at`` (no selection
draws, at most n = 10,000 estimation draws, alpha = 0.001 for the whole
certificate; the first combination that fails stops the rest). The defended
label is PatchCleanser's three-case inference over PREDICTs of n0 = 100 draws
each, from an independent key. Data: CIFAR-10 JPEG class folders in ``data/cifar10``.
"""

import dataclasses
from pathlib import Path

from mrs_jax.configs import _smoke
from mrs_jax.core import configfile
from mrs_jax.job import JobConfig

# cifar10_cpu_pc.py's data, masks and protocol with noise in place of the grey
# fill. The smoke variant shrinks this config (not the base's smoke variant).
BASE = Path(__file__).with_name("cifar10_cpu_pc.py")
SMOKE = dict(
    **_smoke.CERTIFY_SYNTHETIC_CIFAR10,
    num_images=2,
    pc_k=3,
    n0=20,
    n=1000,
    batch_size=64,
)


def get_config(smoke: bool = False) -> JobConfig:
    config = configfile.derive(
        BASE,
        False,
        JobConfig,
        mode="smoothed_double_masking",
        num_images=100,
        batch_size=400,
        target_radius="unrestricted",
    )
    return dataclasses.replace(config, **SMOKE) if smoke else config
