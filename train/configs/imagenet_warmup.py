"""Re-exports the shipped config ``imagenet_warmup``; see its docstring.

Its file is ``mrs_jax/configs/train/imagenet_warmup.py``. This one keeps the
path ``train/configs/imagenet_warmup.py`` working in a checkout; installed from
a wheel, pass the name: ``--config imagenet_warmup``.
"""

from mrs_jax.configs.train.imagenet_warmup import get_config

__all__ = ["get_config"]
