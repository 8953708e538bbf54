"""Re-exports the shipped config ``cifar10_airbench_no_noise``; see its docstring.

Its file is ``mrs_jax/configs/train/cifar10_airbench_no_noise.py``.
This one keeps the path ``train/configs/cifar10_airbench_no_noise.py`` working
in a checkout; installed from a wheel, pass the name:
``--config cifar10_airbench_no_noise``.
"""

from mrs_jax.configs.train.cifar10_airbench_no_noise import get_config

__all__ = ["get_config"]
