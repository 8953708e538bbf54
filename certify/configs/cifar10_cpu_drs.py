"""Re-exports the shipped config ``cifar10_cpu_drs``; see its docstring.

Its file is ``mrs_jax/configs/certify/cifar10_cpu_drs.py``. This one keeps the
path ``certify/configs/cifar10_cpu_drs.py`` working in a checkout; installed
from a wheel, pass the name: ``--config cifar10_cpu_drs``.
"""

from mrs_jax.configs.certify.cifar10_cpu_drs import get_config

__all__ = ["get_config"]
