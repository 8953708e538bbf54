"""Re-exports the shipped config ``cifar10_cpu_vote_deployed``; see its docstring.

Its file is ``mrs_jax/configs/certify/cifar10_cpu_vote_deployed.py``. This one
keeps the path ``certify/configs/cifar10_cpu_vote_deployed.py`` working in a
checkout; installed from a wheel, pass the name: ``--config
cifar10_cpu_vote_deployed``.
"""

from mrs_jax.configs.certify.cifar10_cpu_vote_deployed import get_config

__all__ = ["get_config"]
