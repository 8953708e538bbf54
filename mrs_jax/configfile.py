"""Loading Python config files: each defines ``get_config(smoke=False)``.

Configs are Python files (big_vision / flax style) with the run command in their
docstring; ``smoke=True`` gives the tiny variant used in tests and CI.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path


def load(path: str, smoke: bool, kind: type):
    """Imports the file at ``path`` and returns its ``get_config(smoke)``.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file cannot be imported (syntax error, an exception), defines
        no ``get_config``, or ``get_config`` raised (e.g. a field out of range);
        the message starts with ``path``.
      TypeError: ``get_config`` returned something other than a ``kind``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a config file path, got {type(path).__name__}")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    # The file is the user's code: any failure in it is reported against the file
    # (the original error stays chained for --debug).
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{path}: cannot import: {_describe(err)}") from err
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path} defines no get_config(smoke=False)")
    try:
        config = module.get_config(smoke=smoke)
    except Exception as err:  # noqa: BLE001
        where = f"{path}: get_config(smoke={smoke})"
        raise ValueError(f"{where}: {_describe(err)}") from err
    if not isinstance(config, kind):
        raise TypeError(f"{path}: get_config must return a {kind.__name__}")
    return config


def derive(base: str | os.PathLike, smoke: bool, kind: type, **changes):
    """The config of the file ``base`` (see :func:`load`) with ``changes``: a
    variant config that differs from another only in what it names, e.g. the
    adaptive attack's config as the practical one with another attack.

    Raises:
      ValueError: a change names no field of ``kind``, or makes the config invalid
        (the config's own check); and whatever :func:`load` raises for ``base``.
    """
    config = load(base, smoke, kind)
    fields = {field.name for field in dataclasses.fields(config)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ValueError(f"{kind.__name__} has no field {', '.join(unknown)}")
    return dataclasses.replace(config, **changes)


def _describe(err: BaseException) -> str:
    if isinstance(err, SyntaxError):
        return f"syntax error at line {err.lineno}: {err.msg}"
    if isinstance(err, (ValueError, TypeError)):
        return str(err)  # a config field's own message names the field
    return f"{type(err).__name__}: {err}"
