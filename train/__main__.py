"""Trains a base classifier from a config file.

Usage::

    python -m train --config train/configs/digits.py --workdir runs/digits
    python -m train --config train/configs/digits.py --workdir runs/d --smoke
    python -m train --config ... --workdir runs/digits --resume
    python -m train --config ... --workdir runs/ft --init_from runs/digits

A config file defines ``get_config(smoke: bool = False) -> TrainConfig``. A mistake
(config file, field value, data labels, ``--init_from``, ``--workdir``, a work dir
in use) is one line ``error: ...`` and exit status 2, found before anything is
written; ``--debug`` or ``MRS_DEBUG=1`` shows its traceback. Ctrl-C keeps the
finished epochs and exits 130; rerun with ``--resume`` to continue.
"""

import argparse
import json
import sys
from pathlib import Path

from mrs_jax import cli, configfile, distributed

INTERRUPTED = "interrupted: finished epochs are kept; rerun with --resume to continue"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    parser.add_argument("--config", required=True, help="a train/configs/*.py file")
    parser.add_argument("--workdir", default=None, help="default: runs/<config name>")
    parser.add_argument("--resume", action="store_true", help="continue a run")
    parser.add_argument("--smoke", action="store_true", help="the tiny variant")
    parser.add_argument("--init_from", default=None, help="warm-start checkpoint")
    parser.add_argument("--no_progress", action="store_true", help="no tqdm bar")
    parser.add_argument("--debug", action="store_true", help="tracebacks of errors")
    distributed.add_flags(parser)
    args = parser.parse_args(argv)
    from mrs_jax.training import TrainConfig, train

    config = configfile.load(args.config, args.smoke, TrainConfig)
    processes = distributed.initialize_from(args)
    if processes.count > 1:
        import jax

        print(
            f"process {processes.index} of {processes.count}, "
            f"{jax.device_count()} devices in all",
            file=sys.stderr,
            flush=True,
        )
    workdir = args.workdir or str(Path("runs") / Path(args.config).stem)
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


def _interrupted(workdir: str) -> str:
    from mrs_jax.checkpoint import latest_epoch

    epoch = latest_epoch(workdir)
    kept = "no epoch had finished" if epoch is None else f"epoch {epoch} is kept"
    return f"interrupted: {kept} in {workdir}; rerun with --resume to continue"


def run(argv: list[str] | None = None) -> int:
    """``main`` with user errors as one line (exit 2) and Ctrl-C as exit 130."""
    return cli.main_guard(main, argv, interrupted=INTERRUPTED)


if __name__ == "__main__":
    sys.exit(run())
