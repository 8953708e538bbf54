"""The first vote-aware attack on the whole defence, CIFAR-10 (5x5 patch, sigma 7).

``cifar10_cpu.py``'s protocol (K = 80 locations x 20 sign steps of 0.1, Telea
localiser, dilation 3, CERTIFY with n0 = 100, n = 10,000, alpha = 0.001) with
``mrs_jax.vote_patch_attack`` in place of ``patch_attack``: the patch is optimised
against a soft joint vote (f keeps saying the attacked class, the patch's own
blocks do not change it when filled, blocks of a decoy template far away do), and
the 8 best locations of each image are judged by the job's own Telea localiser,
keeping the one worst for the defence (fooled and missed first). This is the
first version of the attack, targeted at the clean image's best wrong class and
judged without the smoothing (``vote_goal="targeted"``,
``vote_judge="localizer"``), kept so that its committed run reproduces;
``cifar10_cpu_vote_deployed`` is the stronger one. Run on the first
100 of the practical run's images (same ``image_seed``, so the same images in the
same order)::

    python -m certify --config certify/configs/cifar10_cpu_vote.py \
        --checkpoint benchmarks/checkpoints/cifar10_cpu \
        --out benchmarks/runs/cifar10_vote
    python benchmarks/attack_comparison.py benchmarks/runs/cifar10_practical \
        benchmarks/runs/cifar10_adaptive benchmarks/runs/cifar10_vote

Each step costs nine forward-backward passes per location (the base term, 4
patch-template and 4 decoy-template fills) instead of one, and each image is
localised 8 more times to judge the candidates, so 100 images, not 500. Data:
CIFAR-10 JPEG class folders (or ``cifar-10-batches-py``) in ``data/cifar10``.
Smoke: add ``--smoke``.
"""

from pathlib import Path

from mrs_jax.core import configfile
from mrs_jax.job import JobConfig

# Everything but the attack comes from cifar10_cpu.py: same defence, same images.
BASE = Path(__file__).with_name("cifar10_cpu.py")


def get_config(smoke: bool = False) -> JobConfig:
    return configfile.derive(
        BASE, smoke, JobConfig, mode="vote_adaptive", num_images=2 if smoke else 100,
        vote_goal="targeted", vote_judge="localizer",
    )  # fmt: skip
