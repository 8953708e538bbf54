"""Trains a base classifier from a config file.

Usage::

    python -m train --config train/configs/digits.py --workdir runs/digits
    python -m train --config train/configs/digits.py --workdir runs/d --smoke
    python -m train --config ... --workdir runs/digits --resume
    python -m train --config ... --workdir runs/ft --init_from runs/digits

A config file defines ``get_config(smoke: bool = False) -> TrainConfig``.
"""

import argparse
import json
import sys
from pathlib import Path

from mrs_jax import configfile, distributed
from mrs_jax.training import TrainConfig, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    parser.add_argument("--config", required=True, help="a train/configs/*.py file")
    parser.add_argument("--workdir", default=None, help="default: runs/<config name>")
    parser.add_argument("--resume", action="store_true", help="continue a run")
    parser.add_argument("--smoke", action="store_true", help="the tiny variant")
    parser.add_argument("--init_from", default=None, help="warm-start checkpoint")
    parser.add_argument("--no_progress", action="store_true", help="no tqdm bar")
    distributed.add_flags(parser)
    args = parser.parse_args(argv)
    processes = distributed.initialize_from(args)
    import jax

    print(
        f"process {processes.index} of {processes.count}, "
        f"{jax.device_count()} devices in all",
        file=sys.stderr,
        flush=True,
    )
    config = configfile.load(args.config, args.smoke, TrainConfig)
    workdir = args.workdir or str(Path("runs") / Path(args.config).stem)
    row = train(
        config,
        workdir,
        resume=args.resume,
        init_from=args.init_from,
        progress=False if args.no_progress else None,
    )
    print(json.dumps(row))


if __name__ == "__main__":
    main()
