"""ImageNet warm-up stage at sigma = 8 (then ``imagenet.py`` with ``--init_from``).

Run: ``python -m train --config train/configs/imagenet_warmup.py --workdir runs/in_s8``
Smoke: add ``--smoke``.
"""

import dataclasses
import importlib.util
from pathlib import Path

from mrs_jax.training import TrainConfig

_spec = importlib.util.spec_from_file_location(
    "_imagenet_config", Path(__file__).with_name("imagenet.py")
)
_imagenet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_imagenet)


def get_config(smoke: bool = False) -> TrainConfig:
    return dataclasses.replace(
        _imagenet.get_config(smoke), sigma=8.0, epochs=30 if not smoke else 1
    )
