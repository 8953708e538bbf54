"""CIFAR-10 on a 2-core CPU with noise in two squares: the base model for
masked-noise double masking.

Run (data as for ``cifar10_cpu.py``), a warm start from the masked-noise model::

    python -m train --config train/configs/cifar10_cpu_noise_squares.py \
        --workdir benchmarks/checkpoints/cifar10_cpu_noise_squares \
        --init_from benchmarks/checkpoints/cifar10_cpu

``mrs_jax.smoothed_double_masking`` smooths with Gaussian noise (sigma 7) in the
union of one or two PatchCleanser masks: 9x9 squares for a 5x5 patch on 32x32
images with k = 6 (``patchcleanser_masks((32, 32), 5, 6)``). ``cifar10_cpu.py``'s
model saw noise in one square of width 5..10, and under two 9x9 squares the
label's share of draws falls to about 0 wherever they cover the object
(``benchmarks/sdm_combination_shares.py``). So this config keeps
``cifar10_cpu.py``'s network, flips, crops, sigma, label smoothing and weight
decay, and trains on ``augmentation="noise_squares"``: noise of sigma 7 in the
union of two 9x9 squares at independent uniform positions (overlaps allowed),
not clipped, as the smoothed classifiers draw it.

It fine-tunes the masked-noise model for 3 epochs (peak learning rate 0.02,
cosine, warm-up 0.2 epochs) rather than training 9 from scratch: a third of the
CPU time. ``noisy_accuracy`` in ``metrics.jsonl`` is the accuracy under this
augmentation on a fixed random 2,000 test images per epoch.
Smoke: add ``--smoke`` (synthetic 32x32 data, tiny network, two steps).
"""

from pathlib import Path

from mrs_jax.configs import _twins
from mrs_jax.core import configfile
from mrs_jax.training import TrainConfig

BASE = Path(__file__).with_name("cifar10_cpu.py")
# The fine-tune's schedule; a smoke run keeps the base's (one epoch, two steps).
FINE_TUNE = dict(epochs=3, learning_rate=0.02, warmup_epochs=0.2)


def get_config(smoke: bool = False) -> TrainConfig:
    return configfile.derive(
        BASE,
        smoke,
        TrainConfig,
        **_twins.NOISE_SQUARES,
        **({} if smoke else FINE_TUNE),
    )
