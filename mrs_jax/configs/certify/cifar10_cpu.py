"""The paper's CIFAR-10 protocol (5x5 patch, sigma 7) at CPU scale.

Run (after ``train/configs/cifar10_cpu.py``, or with the committed checkpoint)::

    python -m certify --config certify/configs/cifar10_cpu.py \
        --checkpoint benchmarks/checkpoints/cifar10_cpu --out runs/cifar10_practical
    python -m certify --config certify/configs/cifar10_cpu.py --mode center \
        --num_images 200 --checkpoint ... --out runs/cifar10_center

Paper: 500 random test images, K = 80 attack locations, n0 = 100, n = 100,000,
alpha = 0.001, sigma = 7 ([0, 1] pixel l2 units). Here n = 10,000 (each image
certifies twice in practical mode, clean and attacked, and 100,000 would take
about ten times as long on a 2-core CPU), and 20 PGD steps of 0.1 at each of the
80 locations. With n = 10,000 and alpha = 0.001 the largest certifiable radius is
sigma * Phi^-1(0.001 ** (1 / 10,000)) = 7 * 3.20 = 22.4: the true unrestricted
radius 5 * sqrt(3) = 8.66 is reachable, the paper's s^2 = 25 is not (it needs
n > 38,000). Data: CIFAR-10 JPEG class folders (or
``cifar-10-batches-py``) in ``data/cifar10``.
"""

from pathlib import Path

from mrs_jax.core import configfile
from mrs_jax.job import JobConfig

# cifar10.py (the paper's protocol) with a CPU's attack budget, draws and batches.
BASE = Path(__file__).with_name("cifar10.py")
# A smoke run keeps the base's sizes (synthetic data, 2 steps, 100 draws).
CPU_SCALE = dict(data_dir="data/cifar10", attack_steps=20, n=10_000, batch_size=400)


def get_config(smoke: bool = False) -> JobConfig:
    return configfile.derive(
        BASE,
        smoke,
        JobConfig,
        attack_step_size=0.1,
        localize_batch_size=392,
        **({} if smoke else CPU_SCALE),
    )
