"""Re-exports the shipped config ``cifar10_airbench_noise_squares``; see its docstring.

Its file is ``mrs_jax/configs/train/cifar10_airbench_noise_squares.py``.
This one keeps the path ``train/configs/cifar10_airbench_noise_squares.py`` working
in a checkout; installed from a wheel, pass the name:
``--config cifar10_airbench_noise_squares``.
"""

from mrs_jax.configs.train.cifar10_airbench_noise_squares import get_config

__all__ = ["get_config"]
