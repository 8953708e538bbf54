"""Re-exports the shipped config ``cifar10_airbench``; see its docstring.

Its file is ``mrs_jax/configs/train/cifar10_airbench.py``. This one keeps the
path ``train/configs/cifar10_airbench.py`` working in a checkout; installed from
a wheel, pass the name: ``--config cifar10_airbench``.
"""

from mrs_jax.configs.train.cifar10_airbench import get_config

__all__ = ["get_config"]
