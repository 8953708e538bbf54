"""Re-exports the shipped config ``imagenet``; see its docstring.

Its file is ``mrs_jax/configs/certify/imagenet.py``. This one keeps the
path ``certify/configs/imagenet.py`` working in a checkout; installed from
a wheel, pass the name: ``--config imagenet``.
"""

from mrs_jax.configs.certify.imagenet import get_config

__all__ = ["get_config"]
