"""Small CNN on the embedded 8x8 digits (upsampled to 32x32); the default model.

Run: ``python -m train --config train/configs/digits.py --workdir runs/digits``
Smoke: add ``--smoke``.

Noise: sigma = 3.0 in [0, 1] pixel units inside squares of width 5..11, for 30
epochs. The width range reaches 11 because the certification mask is the located
5x5 block dilated by 3 pixels on each side. sigma = 3 lets CERTIFY reach radii up
to 3 * Phi^-1(0.001^(1/n)) = 9.6 at n = 10,000, past the 8.66 l2 bound of any 5x5x3
patch; sigma = 1 (99.3% clean) caps radii at 3.2. Figures in
benchmarks/RESULTS.md.
"""

import dataclasses

from mrs_jax.training import TrainConfig


def get_config(smoke: bool = False) -> TrainConfig:
    config = TrainConfig(
        dataset="digits",
        model="small_cnn",
        num_classes=10,
        epochs=30,
        batch_size=64,
        learning_rate=0.05,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=1.0,
        sigma=3.0,
        w_min=5,
        w_max=11,
    )
    if smoke:
        config = dataclasses.replace(
            config,
            model="tiny_cnn",
            epochs=1,
            batch_size=16,
            max_steps_per_epoch=2,
            max_eval_examples=32,
        )
    return config
