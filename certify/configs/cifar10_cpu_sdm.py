"""Re-exports the shipped config ``cifar10_cpu_sdm``; see its docstring.

Its file is ``mrs_jax/configs/certify/cifar10_cpu_sdm.py``. This one keeps the
path ``certify/configs/cifar10_cpu_sdm.py`` working in a checkout; installed from
a wheel, pass the name: ``--config cifar10_cpu_sdm``.
"""

from mrs_jax.configs.certify.cifar10_cpu_sdm import get_config

__all__ = ["get_config"]
