"""Re-exports the shipped config ``digits``; see its docstring.

Its file is ``mrs_jax/configs/train/digits.py``. This one keeps the
path ``train/configs/digits.py`` working in a checkout; installed from
a wheel, pass the name: ``--config digits``.
"""

from mrs_jax.configs.train.digits import get_config

__all__ = ["get_config"]
