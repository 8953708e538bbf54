"""CIFAR-10, airbench-class recipe for (de)randomized smoothing: column ablation.

Run (data as for ``cifar10_airbench.py``)::

    python -m train --config train/configs/cifar10_airbench_drs.py \
        --workdir benchmarks/checkpoints/cifar10_airbench_drs

``cifar10_airbench.py`` in everything (network, schedule, lookahead, flips,
translations, 10 epochs) but what each training image becomes: ablated to one
band of 4 columns at a random position (wrapping around) and encoded to six
channels ``(x, 1 - x)``, ablated pixels ``(0, 0)`` (``augmentation="ablation"``;
Levine & Feizi's column smoothing with ``b = 4`` for 5x5 patches). The
whitening is computed from the whole images encoded, not from their ablations
(mostly all-zero patches), and keeps the 13 directions a 2x2 patch of the
encoding varies in (``whiten_directions``: ``x_c + (1 - x_c)`` is 1 for every
channel, so 11 of the 24 carry nothing). The network takes six channels,
normalised by nothing (mean 0, std 1: the encoding is in [0, 1] already) and
not clamped; BatchNorm adds ``1e-5`` to the variance, not airbench's ``1e-12``.
Both guard against channels of rounding error: with all 24 directions the
band accuracy fell to 25% in epoch 2 while the training accuracy rose to 36%
(``docs/derandomized_smoothing.md``). ``noisy_accuracy`` in ``metrics.jsonl`` is the
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
    ("whiten_directions", 13),
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
