"""Loading Python config files: each defines ``get_config(smoke=False)``.

Configs are Python files (big_vision / flax style) with the run command in their
docstring; ``smoke=True`` gives the tiny variant used in tests and CI.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def load(path: str, smoke: bool, kind: type):
    """Imports the file at ``path`` and returns its ``get_config(smoke)``.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file defines no ``get_config``.
      TypeError: ``get_config`` returned something other than a ``kind``.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path} defines no get_config(smoke=False)")
    config = module.get_config(smoke=smoke)
    if not isinstance(config, kind):
        raise TypeError(f"{path}: get_config must return a {kind.__name__}")
    return config
