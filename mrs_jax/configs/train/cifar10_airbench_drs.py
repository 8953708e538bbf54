"""CIFAR-10, airbench-class recipe for (de)randomized smoothing: column ablation.

Run (data as for ``cifar10_airbench.py``)::

    python -m train --config train/configs/cifar10_airbench_drs.py \
        --workdir benchmarks/checkpoints/cifar10_airbench_drs

``cifar10_airbench.py`` in everything (network, schedule, lookahead, flips,
translations, 10 epochs) but what each training image becomes: ablated to one
band of 4 columns at a random position (wrapping around) and encoded to six
channels ``(x, 1 - x)``, ablated pixels ``(0, 0)`` (``augmentation="ablation"``;
Levine & Feizi's column smoothing with ``b = 4`` for 5x5 patches). The
whitening is computed from the whole images encoded, not from their ablations:
those are mostly all-zero patches and band edges, and whitened on them a
probe on CIFAR-10 diverged at step 14. The network takes six channels,
normalised by nothing (mean 0, std 1: the encoding is in [0, 1] already) and
not clamped. BatchNorm adds ``1e-5`` to the variance, not airbench's ``1e-12``:
on band ablations one channel of the first group is near-constant, and with
``1e-12`` its weights grew to ``1e12`` in two epochs, where float32 gave the
same weights 25% band accuracy in one evaluation and 36% in another; with
``1e-5`` they stay under ``1e6`` and a 400-step probe learned as fast (35.8%
against 36.0%). ``noisy_accuracy`` in ``metrics.jsonl`` is the
accuracy on one random band per test image (the base classifier's vote
accuracy), ``clean_accuracy`` on the whole image encoded. Certify with
``--mode drs`` (``drs_band=4``).
Smoke: add ``--smoke`` (synthetic 32x32 data, tiny network, two steps).
"""

from pathlib import Path

from mrs_jax.core import configfile
from mrs_jax.training import TrainConfig

BASE = Path(__file__).with_name("cifar10_airbench.py")
ENCODED = (
    ("in_channels", 6),
    ("mean", (0.0,) * 6),
    ("std", (1.0,) * 6),
    ("bn_epsilon", 1e-5),
)


def get_config(smoke: bool = False) -> TrainConfig:
    base = configfile.load(BASE, smoke, TrainConfig)
    kwargs = tuple(kv for kv in base.model_kwargs if kv[0] != "clamp")
    return configfile.derive(
        BASE,
        smoke,
        TrainConfig,
        augmentation="ablation",
        ablation_band=4,
        ablation_mode="column",
        model_kwargs=kwargs + ENCODED,
        whiten_augmented=False,
    )
