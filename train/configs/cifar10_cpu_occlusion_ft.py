"""Re-exports the shipped config ``cifar10_cpu_occlusion_ft``; see its docstring.

Its file is ``mrs_jax/configs/train/cifar10_cpu_occlusion_ft.py``. This one
keeps the path ``train/configs/cifar10_cpu_occlusion_ft.py`` working in a
checkout; installed from a wheel, pass the name:
``--config cifar10_cpu_occlusion_ft``.
"""

from mrs_jax.configs.train.cifar10_cpu_occlusion_ft import get_config

__all__ = ["get_config"]
