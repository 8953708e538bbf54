"""ResNet-50 on ImageNet (224x224) with noise in random squares, sigma = 257.

The paper warms up at sigma = 8 and then trains at 257 (MRS_SPEC section 7). Run the
warm-up config first, then this one from its weights:

    python -m train --config train/configs/imagenet_warmup.py --workdir runs/in_s8
    python -m train --config train/configs/imagenet.py --workdir runs/imagenet \
        --init_from runs/in_s8

Data: tensorflow-datasets ``imagenet2012`` prepared as array_record in ``data_dir``
(``tfds build imagenet2012 --file_format=array_record``, with the ILSVRC2012
tarballs in ``<data_dir>/downloads/manual``). Images are resized (shorter side 256)
and centre-cropped to 224, then randomly flipped and cropped.
Smoke: add ``--smoke`` (synthetic 32x32 data, a tiny bottleneck ResNet, two steps).
"""

import dataclasses

from mrs_jax.configs import _smoke
from mrs_jax.training import TrainConfig


def get_config(smoke: bool = False) -> TrainConfig:
    config = TrainConfig(
        dataset="imagenet2012",
        data_dir="data/tfds",
        model="resnet50",
        num_classes=1000,
        epochs=90,
        batch_size=256,
        learning_rate=0.1,
        weight_decay=1e-4,
        schedule="cosine",
        warmup_epochs=5.0,
        sigma=257.0,
        w_min=32,
        w_max=64,
        flip_crop=True,
        max_eval_examples=10_000,
    )
    if smoke:
        config = dataclasses.replace(
            config, model="resnet50_tiny", num_classes=5, **_smoke.TRAIN_SYNTHETIC
        )
    return config
