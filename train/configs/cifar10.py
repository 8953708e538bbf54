"""Re-exports the shipped config ``cifar10``; see its docstring.

Its file is ``mrs_jax/configs/train/cifar10.py``. This one keeps the
path ``train/configs/cifar10.py`` working in a checkout; installed from
a wheel, pass the name: ``--config cifar10``.
"""

from mrs_jax.configs.train.cifar10 import get_config

__all__ = ["get_config"]
