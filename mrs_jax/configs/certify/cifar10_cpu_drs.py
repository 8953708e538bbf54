"""(De)randomized column smoothing on CIFAR-10 (5x5 patch): the paper's first
baseline, on the same images as ``cifar10_cpu.py``'s runs (same ``image_seed``).

Run on a model trained on band ablations (``train/configs/cifar10_airbench_drs.py``)::

    python -m certify --config certify/configs/cifar10_cpu_drs.py \
        --checkpoint benchmarks/checkpoints/cifar10_airbench_drs --out runs/drs

Levine & Feizi's column smoothing with bands of b = 4 columns: all 32 band
positions vote (one forward pass each), the label with most votes is the
prediction, and it is certified for every 5x5 patch position and content when
it leads every other class by more than 2 * (5 + 4 - 1) = 16 votes
(``MRS_SPEC.md`` section 10; deterministic: no noise, no alpha, no radius).
``sigma``, ``n0``, ``n`` and ``alpha`` are unused; they are kept equal to
``cifar10_cpu.py``'s so run.json shows one protocol.
"""

import dataclasses
from pathlib import Path

from mrs_jax.configs import _smoke
from mrs_jax.core import configfile
from mrs_jax.job import JobConfig

# The paper's protocol (cifar10.py) with cifar10_cpu.py's data; the attack fields
# are unused here. Smoke: synthetic data, two images.
BASE = Path(__file__).with_name("cifar10.py")
SMOKE = dict(**_smoke.CERTIFY_SYNTHETIC_CIFAR10, num_images=2)


def get_config(smoke: bool = False) -> JobConfig:
    config = configfile.derive(
        BASE,
        False,
        JobConfig,
        mode="drs",
        data_dir="data/cifar10",
        num_images=200,
        n=10_000,
        drs_band=4,
        drs_mode="column",
        drs_theta=0.0,
    )
    return dataclasses.replace(config, **SMOKE) if smoke else config
