"""The command-line programs, installed as console scripts.

``mrs-train`` (:mod:`mrs_jax.commands.train`), ``mrs-certify``
(:mod:`mrs_jax.commands.certify`), ``mrs-analyze``
(:mod:`mrs_jax.commands.analyze`) and ``mrs-demo`` (:mod:`mrs_jax.commands.demo`). In a
checkout the same programs run as ``python -m train``, ``python -m certify``,
``python -m certify.analyze`` and ``python -m certify.demo``, whose modules only
call these.

Each program has the same two functions: ``main(argv=None)`` is the console
entry point (a user's mistake is one line ``error: ...`` and exit status 2,
Ctrl-C exit 130; see ``_cli.main_guard``), and ``run(argv)`` does the work and
raises. The helpers below give train and certify the same ``--config``
handling: a file or a shipped name, ``:smoke``, and ``--config.FIELD=value``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from mrs_jax.core import configfile

OVERRIDES_HELP = (
    "Any config field can be changed with --config.FIELD=value (or --config.FIELD "
    "value), e.g. --config.sigma=0.25 --config.synthetic_shape=16,16,3 "
    "--config.data_dir=None; the value is parsed by the field's type and the "
    "changed config is what the run records."
)


def help_text(doc: str) -> str:
    """``doc`` as ``--help`` shows it: reST markup (double backticks, roles such as
    ``:func:``, a literal block's ``::``) removed, the text otherwise unchanged."""
    text = re.sub(r":(?:func|mod|class|data|attr):`([^`]*)`", r"\1", doc)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    return re.sub(r"::$", ":", text, flags=re.M)


def prog(module: str) -> str:
    """The program's name for usage lines: the console script's (``mrs-certify``)
    when run as one, else ``python -m <module>``."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return script if script.startswith("mrs-") else f"python -m {module}"


def config_parser(module: str, kind: str, doc: str) -> argparse.ArgumentParser:
    """The parser of a program that runs a ``kind`` config: named for
    ``module`` (:func:`prog`), ``doc`` as its description, the overrides'
    help as its epilog, and ``--config`` (:func:`add_config_flag`)."""
    parser = argparse.ArgumentParser(
        prog=prog(module),
        description=help_text(doc),
        epilog=OVERRIDES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_flag(parser, kind)
    return parser


def add_config_flag(parser: argparse.ArgumentParser, kind: str) -> None:
    """Adds ``--config FILE_OR_NAME[:smoke]`` for configs of ``kind``."""
    names = ", ".join(configfile.shipped_names(kind))
    parser.add_argument(
        "--config",
        required=True,
        metavar="FILE_OR_NAME[:smoke]",
        help=f"a config file, or a shipped {kind} config by name ({names}); "
        "':smoke' selects its smoke variant",
    )


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, list[tuple[str, str]]]:
    """``(args, overrides)``: argv parsed, with ``--config.FIELD=value`` set apart.

    Raises:
      ValueError: an override without a field name or a value.
    """
    rest, overrides = configfile.split_overrides(sys.argv[1:] if argv is None else argv)
    return parser.parse_args(rest), overrides


def load_config(
    args: argparse.Namespace,
    overrides: Sequence[tuple[str, str]],
    kind: str,
    config_type: type,
    **flags,
):
    """``(config, path)``: ``args.config`` resolved and loaded (smoke if
    ``:smoke`` or ``args.smoke``), with the flags that are not None (e.g.
    ``--mode``) and then the ``--config.FIELD`` overrides applied in one build,
    so the config's checks see only the result.

    Raises:
      FileNotFoundError, ValueError, TypeError: from :mod:`mrs_jax.configfile`,
        each naming the file or the field.
    """
    path, smoke = configfile.resolve(args.config, kind)
    config = configfile.load(path, smoke or args.smoke, config_type)
    changes = {name: value for name, value in flags.items() if value is not None}
    return configfile.override(config, overrides, changes), Path(path)
