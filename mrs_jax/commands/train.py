"""Trains a base classifier from a config file.

Usage (``mrs-train``, or ``python -m train`` in a checkout)::

    mrs-train --config digits --workdir runs/digits
    mrs-train --config train/configs/digits.py --workdir runs/d --smoke
    mrs-train --config digits:smoke --config.epochs=2 --workdir runs/d2
    mrs-train --config ... --workdir runs/digits --resume
    mrs-train --config ... --workdir runs/ft --init_from runs/digits

A config file defines ``get_config(smoke: bool = False) -> TrainConfig``; the
shipped ones go by name. ``--config.FIELD=value`` changes any field (recorded in
``model.json``). A mistake (config file, field value, data labels,
``--init_from``, ``--workdir``, a work dir in use) is one line ``error: ...`` and
exit status 2, found before anything is written; ``--debug`` or ``MRS_DEBUG=1``
shows its traceback. Ctrl-C keeps the finished epochs and exits 130; rerun with
``--resume`` to continue.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mrs_jax import commands
from mrs_jax.commands import _cli as cli, _distributed as distributed

# The library's names of what the flags set: errors name the flag typed.
FLAGS = {"workdir": "--workdir", "resume": "--resume", "init_from": "--init_from"}

INTERRUPTED = "interrupted: finished epochs are kept; rerun with --resume to continue"


def main(argv: list[str] | None = None) -> int:
    """``mrs-train``: :func:`run` with user errors as one line (exit 2) and
    Ctrl-C as exit 130."""
    return cli.main_guard(run, argv, interrupted=INTERRUPTED, flags=FLAGS)


def run(argv: list[str] | None = None) -> int:
    """Trains as the command line asks; user errors raise (see :func:`main`)."""
    args, overrides = commands.parse_args(_parser(), argv)
    from mrs_jax.training import TrainConfig, train

    config, path = commands.load_config(args, overrides, "train", TrainConfig)
    processes = distributed.initialize_from(args)
    if processes.count > 1:
        import jax

        print(
            f"process {processes.index} of {processes.count}, "
            f"{jax.device_count()} devices in all",
            file=sys.stderr,
            flush=True,
        )
    workdir = args.workdir or str(Path("runs") / path.stem)
    try:
        row = train(
            config,
            workdir,
            resume=args.resume,
            init_from=args.init_from,
            progress=False if args.no_progress else None,
        )
    except KeyboardInterrupt:
        print(f"\n{_interrupted(workdir)}", file=sys.stderr, flush=True)
        return cli.INTERRUPT_EXIT
    print(json.dumps(row))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = commands.config_parser("train", "train", __doc__)
    parser.add_argument("--workdir", default=None, help="default: runs/<config name>")
    parser.add_argument("--resume", action="store_true", help="continue a run")
    parser.add_argument("--smoke", action="store_true", help="the tiny variant")
    parser.add_argument("--init_from", default=None, help="warm-start checkpoint")
    parser.add_argument(
        "--no_progress", action="store_true", help="no progress lines on stderr"
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    distributed.add_flags(parser)
    return parser


def _interrupted(workdir: str) -> str:
    from mrs_jax.models import latest_epoch

    epoch = latest_epoch(workdir)
    kept = "no epoch had finished" if epoch is None else f"epoch {epoch} is kept"
    return f"interrupted: {kept} in {workdir}; rerun with --resume to continue"


if __name__ == "__main__":
    sys.exit(main())
