"""Loading Python config files: each defines ``get_config(smoke=False)``.

Configs are Python files (big_vision / flax style) with the run command in their
docstring; ``smoke=True`` gives the tiny variant used in tests and CI. The entry
points name one as ``--config FILE_OR_NAME[:smoke]`` (:func:`resolve`: a path, or
the name of a config shipped in ``mrs_jax/configs/<kind>/``) and change any field
with ``--config.FIELD=value`` (:func:`split_overrides`, :func:`override`: the
value is parsed by the field's type, as ml_collections' ``config_flags`` does).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SHIPPED = Path(__file__).resolve().parents[1] / "configs"
KINDS = ("train", "certify")
SMOKE_SUFFIX = ":smoke"
OVERRIDE_PREFIX = "--config."


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


# --- a config by name ----------------------------------------------------------------


def shipped_names(kind: str) -> list[str]:
    """The names of the configs shipped for ``kind`` (``"train"`` or ``"certify"``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return sorted(
        file.stem for file in (SHIPPED / kind).glob("*.py") if file.stem[0] != "_"
    )


def resolve(spec: str | os.PathLike, kind: str) -> tuple[str, bool]:
    """``(path, smoke)`` of ``--config FILE_OR_NAME[:smoke]``.

    A spec that is an existing file, or looks like a path (a directory separator
    or a ``.py`` suffix), is a path; anything else is the name of a shipped config
    of ``kind`` (``mrs_jax/configs/<kind>/<name>.py``). A ``:smoke`` suffix asks
    for the config's smoke variant.

    Raises:
      TypeError: ``spec`` is not a str or path.
      FileNotFoundError: no such file, or no shipped config of that name (the
        message lists the names).
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"--config must be a file or a name, got {spec!r}")
    text = os.fspath(spec)
    smoke = text.endswith(SMOKE_SUFFIX)
    if smoke:
        text = text[: -len(SMOKE_SUFFIX)]
    looks_like_path = os.sep in text or "/" in text or text.endswith(".py")
    if Path(text).is_file() or looks_like_path:
        if not Path(text).is_file():
            raise FileNotFoundError(f"config file not found: {text}")
        return text, smoke
    return str(shipped(text, kind)), smoke


def shipped(name: str, kind: str) -> Path:
    """The file of the shipped ``kind`` config ``name`` (``mrs_jax/configs/``).

    Raises:
      FileNotFoundError: no such config (the message lists the names).
    """
    names = shipped_names(kind)
    if name not in names:
        raise FileNotFoundError(
            f"--config {name}: no such file, nor a shipped {kind} config "
            f"(names: {', '.join(names)})"
        )
    return SHIPPED / kind / f"{name}.py"


# --- --config.FIELD=value ---------------------------------------------------------


def split_overrides(
    argv: Sequence[str],
) -> tuple[list[str], list[tuple[str, str]]]:
    """Separates ``--config.FIELD=value`` / ``--config.FIELD value`` from argv.

    Returns:
      ``(rest, overrides)``: the other arguments in order, and ``(field, text)``
      pairs in the order given (a later one for the same field wins).

    Raises:
      ValueError: an override with no field name or no value.
    """
    rest, overrides = [], []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith(OVERRIDE_PREFIX):
            rest.append(arg)
            continue
        name, equals, text = arg[len(OVERRIDE_PREFIX) :].partition("=")
        if not name:
            raise ValueError(f"{arg}: name a field, as in --config.sigma=0.25")
        if not equals:
            if i == len(args) or args[i].startswith("--"):
                raise ValueError(f"{arg} needs a value: {arg}=VALUE")
            text = args[i]
            i += 1
        overrides.append((name, text))
    return rest, overrides


def override(
    config, overrides: Sequence[tuple[str, str]], flags: Mapping[str, Any] | None = None
):
    """``config`` (a frozen dataclass) with ``flags`` (values already typed: a
    command's ``--mode``, ``--num_images``) and each ``(field, text)`` applied.

    Each text is parsed by its field's annotated type: ``None``/``none``/``null``
    where the field may be None, ``true``/``false`` (also ``1``/``0``, ``yes``/
    ``no``) for a bool, an int, a float, a tuple as a Python literal
    (``32,32,3`` or ``(32, 32, 3)``), else the text itself for a str. The new
    config is built once, so its own checks (and those across fields) run on the
    result only: ``--mode drs --config.target_radius=None`` works where ``drs``
    refuses the config's target radius.

    Raises:
      ValueError: a field the config does not have (with the nearest names), a
        text its type cannot parse, or a value the config's check refuses; each
        message starts with ``--config.FIELD``.
    """
    flags = dict(flags or {})
    if not overrides and not flags:
        return config
    kind = type(config)
    hints = typing.get_type_hints(kind)
    fields = [field.name for field in dataclasses.fields(config)]
    changes = dict(flags)
    for name, text in overrides:
        if name not in fields:
            near = difflib.get_close_matches(name, fields, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise ValueError(
                f"--config.{name}: {kind.__name__} has no field {name!r}{hint}"
            )
        changes[name] = parse_value(text, hints[name], f"--config.{name}")
    try:
        return dataclasses.replace(config, **changes)
    except (ValueError, TypeError) as err:
        given = " ".join(
            [f"--{name} {value}" for name, value in flags.items()]
            + [f"--config.{name}={text}" for name, text in overrides]
        )
        raise ValueError(f"{given}: {err}") from err


def parse_value(text: str, hint, where: str):
    """``text`` as a value of the type ``hint`` (see :func:`override`).

    Raises:
      ValueError: no member of ``hint`` parses ``text``; the message starts with
        ``where`` and says what was expected.
    """
    members = _members(hint)
    # str accepts anything, so it is tried last.
    ordered = sorted(members, key=lambda member: member is str)
    for member in ordered:
        try:
            return _PARSERS.get(_origin(member), _parse_literal)(text)
        except (ValueError, SyntaxError, TypeError):
            continue
    expected = " or ".join(_type_name(member) for member in ordered)
    raise ValueError(f"{where}: expected {expected}, got {text!r}")


def _members(hint) -> tuple:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _origin(member):
    return typing.get_origin(member) or member


def _type_name(member) -> str:
    if member is type(None):
        return "None"
    origin = _origin(member)
    return getattr(origin, "__name__", str(member))


def _parse_none(text: str) -> None:
    if text.strip() not in ("None", "none", "null"):
        raise ValueError(text)


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in ("true", "1", "yes"):
        return True
    if word in ("false", "0", "no"):
        return False
    raise ValueError(text)


def _parse_int(text: str) -> int:
    return int(text.strip())


def _parse_float(text: str) -> float:
    return float(text.strip())


def _parse_tuple(text: str) -> tuple:
    value = ast.literal_eval(text.strip())
    if not isinstance(value, (tuple, list)):
        raise ValueError(text)
    return _tuples(value)


def _parse_literal(text: str):
    """A field typed ``Any``: a Python literal, else the text."""
    try:
        return _tuples(ast.literal_eval(text.strip()))
    except (ValueError, SyntaxError):
        return text


def _tuples(value):
    # A frozen config holds tuples (hashable), not lists, at every depth.
    if isinstance(value, (tuple, list)):
        return tuple(_tuples(item) for item in value)
    return value


_PARSERS = {
    type(None): _parse_none,
    bool: _parse_bool,
    int: _parse_int,
    float: _parse_float,
    tuple: _parse_tuple,
    str: str,
}
