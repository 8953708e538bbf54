"""ResNet-110 (Cohen et al.) on CIFAR-10 with noise in random 5..10 squares.

Run: ``python -m train --config train/configs/cifar10.py --workdir runs/cifar10``
(data from ``data_dir`` holding ``cifar-10-batches-py``, else tensorflow-datasets
prepared with ``tfds build cifar10 --file_format=array_record``; edit ``data_dir``).
Smoke: add ``--smoke`` (synthetic 32x32 data, tiny ResNet, two steps).

Noise: sigma = 7 in [0, 1] pixel units, widths 5..10: the paper's CIFAR-10 setting
(MRS_SPEC section 7). Random crops and flips as in Cohen et al.; 90 epochs, SGD 0.1,
step schedule.
"""

import dataclasses

from mrs_jax.configs import _smoke
from mrs_jax.training import TrainConfig


def get_config(smoke: bool = False) -> TrainConfig:
    config = TrainConfig(
        dataset="cifar10",
        data_dir="data",
        model="resnet110",
        num_classes=10,
        epochs=90,
        batch_size=256,
        learning_rate=0.1,
        weight_decay=1e-4,
        schedule="step",
        sigma=7.0,
        w_min=5,
        w_max=10,
        flip_crop=True,
        eval_batch_size=500,
    )
    if smoke:
        config = dataclasses.replace(
            config, model="resnet_tiny", **_smoke.TRAIN_SYNTHETIC
        )
    return config
