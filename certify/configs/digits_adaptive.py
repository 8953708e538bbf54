"""Re-exports the shipped config ``digits_adaptive``; see its docstring.

Its file is ``mrs_jax/configs/certify/digits_adaptive.py``. This one keeps the
path ``certify/configs/digits_adaptive.py`` working in a checkout; installed from
a wheel, pass the name: ``--config digits_adaptive``.
"""

from mrs_jax.configs.certify.digits_adaptive import get_config

__all__ = ["get_config"]
