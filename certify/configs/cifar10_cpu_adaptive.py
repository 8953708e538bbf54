"""Re-exports the shipped config ``cifar10_cpu_adaptive``; see its docstring.

Its file is ``mrs_jax/configs/certify/cifar10_cpu_adaptive.py``. This one keeps the
path ``certify/configs/cifar10_cpu_adaptive.py`` working in a checkout; installed from
a wheel, pass the name: ``--config cifar10_cpu_adaptive``.
"""

from mrs_jax.configs.certify.cifar10_cpu_adaptive import get_config

__all__ = ["get_config"]
