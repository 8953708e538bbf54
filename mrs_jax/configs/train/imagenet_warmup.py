"""ImageNet warm-up stage at sigma = 8 (then ``imagenet.py`` with ``--init_from``).

Run: ``python -m train --config train/configs/imagenet_warmup.py --workdir runs/in_s8``
Smoke: add ``--smoke``.
"""

from pathlib import Path

from mrs_jax.core import configfile
from mrs_jax.training import TrainConfig

BASE = Path(__file__).with_name("imagenet.py")
# A smoke run keeps the base's one epoch.
WARMUP_EPOCHS = dict(epochs=30)


def get_config(smoke: bool = False) -> TrainConfig:
    return configfile.derive(
        BASE, smoke, TrainConfig, sigma=8.0, **({} if smoke else WARMUP_EPOCHS)
    )
