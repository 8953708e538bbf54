"""The vote-aware attack judged by the deployed defence, CIFAR-10 (5x5 patch, sigma 7).

``cifar10_cpu_vote.py`` with the attack's stronger settings (the defaults):
untargeted (the best wrong class of the patched image at every step, not one
class fixed on the clean image), and each image's 8 best candidates judged by
the defence as deployed, the job's Telea localiser and then PREDICT with n0 =
100 draws in the located mask, keeping the one the defence answers worst (a
wrong label, then an abstention, then the least support for the true label).
The same images as the practical run, in the same order::

    python -m certify --config certify/configs/cifar10_cpu_vote_deployed.py \
        --checkpoint benchmarks/checkpoints/cifar10_cpu \
        --out benchmarks/runs/cifar10_vote_deployed
    python benchmarks/attack_comparison.py benchmarks/runs/cifar10_practical \
        benchmarks/runs/cifar10_vote benchmarks/runs/cifar10_vote_deployed

Each row keeps its patch's pixels (``save_patches``), so other defences can be
measured on the same attacked images (``benchmarks/sdm_under_attacks.py``).
Cost as ``cifar10_cpu_vote.py`` plus 8 PREDICTs of 100 draws an image. Data:
CIFAR-10 JPEG class folders (or ``cifar-10-batches-py``) in ``data/cifar10``.
Smoke: add ``--smoke``.
"""

from pathlib import Path

from mrs_jax.core import configfile
from mrs_jax.job import JobConfig

# The first vote-aware config, with the attack's stronger settings.
BASE = Path(__file__).with_name("cifar10_cpu_vote.py")


def get_config(smoke: bool = False) -> JobConfig:
    return configfile.derive(
        BASE, smoke, JobConfig, vote_goal="untargeted", vote_judge="defence",
        save_patches=True,
    )  # fmt: skip
