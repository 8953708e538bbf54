"""The embedded demo: train on digits if needed, attack, localise, certify, report.

Everything runs offline on the 8x8 scikit-learn digits (upsampled to 32x32x3):
train the small CNN with noise inside random squares (skipped when a checkpoint
exists; resumed when a previous demo was killed mid-training), run the practical
mode on a few dozen test digits with a 5x5 patch (resumed row by row), then print
the results table and write the R-accuracy plot and CSV.

Every argument is checked before training starts (``--num_images 0`` or an
unusable ``--workdir`` is one line ``error: ...``, exit status 2); Ctrl-C keeps
the finished epochs and rows (rerun to continue) and exits 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from mrs_jax import commands, job, report as analysis
from mrs_jax.commands import _cli as cli
from mrs_jax.core import configfile

# The library's names of what the flags set: errors name the flag typed.
FLAGS = {"out_dir": "the run directory under --workdir"}

INTERRUPTED = (
    "interrupted: finished epochs and rows are kept; rerun the same command to continue"
)


def main(argv: list[str] | None = None) -> int:
    """``mrs-demo``: :func:`run` with user errors as one line (exit 2) and
    Ctrl-C as exit 130."""
    return cli.main_guard(run, argv, interrupted=INTERRUPTED, flags=FLAGS)


def run(argv: list[str] | None = None) -> int:
    """Runs the demo as the command line asks; user errors raise (see
    :func:`main`)."""
    args = _parser().parse_args(argv)

    workdir = Path(args.workdir)
    model_dir = workdir / ("digits_smoke" if args.smoke else "digits")
    out = workdir / ("demo_smoke" if args.smoke else "demo")
    config, train_config = _configs(args.smoke, args.num_images)
    # Everything is checked before the (long) training starts.
    job.check_out_dir(model_dir)
    job.validate(
        dataclasses.replace(config, sigma=float(train_config.sigma)),
        out,
        num_classes=train_config.num_classes,
        meta={"dataset": train_config.dataset},
    )
    config = _train_and_certify(config, train_config, model_dir, out)
    _report(out, config)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=commands.prog("certify.demo"), description=commands.help_text(__doc__)
    )
    parser.add_argument("--workdir", default="runs", help="where runs are written")
    parser.add_argument(
        "--num_images",
        type=int,
        default=None,
        metavar="N",
        help="test digits to attack and certify (default: the demo config's 30)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny, for tests")
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return parser


def _configs(smoke: bool, num_images: int | None):
    """``(config, train_config)``: the shipped digits configs, by name (the demo
    runs from an installed wheel too)."""
    from mrs_jax.training import TrainConfig

    config = configfile.load(
        configfile.shipped("digits", "certify"), smoke, job.JobConfig
    )
    if num_images is not None:
        if num_images < 1:
            raise cli.UsageError(f"--num_images must be >= 1, got {num_images}")
        config = dataclasses.replace(config, num_images=num_images)
    train_config = configfile.load(
        configfile.shipped("digits", "train"), smoke, TrainConfig
    )
    return config, train_config


def _train_and_certify(config, train_config, model_dir: Path, out: Path):
    """Trains (or reuses) the model and certifies with it; returns the config
    at the model's training sigma."""
    from mrs_jax.models import load_classifier
    from mrs_jax.training import train

    cli.quiet_checkpoint_logs()
    # A finished run returns at once; a killed one resumes from its checkpoint.
    print(f"training (or reusing) the digits model in {model_dir} ...", flush=True)
    train(train_config, model_dir, resume=True)
    classify, meta = load_classifier(model_dir)
    # Certify at the noise level the model was trained with.
    config = dataclasses.replace(config, sigma=float(meta["sigma"]))
    print(
        f"certifying {config.num_images} test digits (5x5 patch, sigma "
        f"{config.sigma}, n = {config.n:,}) into {out} ...",
        flush=True,
    )
    job.run(
        config,
        out,
        classify=classify,
        num_classes=int(meta["num_classes"]),
        meta={"checkpoint": str(model_dir), **meta},
    )
    return config


def _report(out: Path, config) -> None:
    """Prints the results table; writes it, the curves plot and CSV."""
    summary = analysis.summarize_run(out)
    radii = [0.0, config.sigma / 2, config.sigma, 2 * config.sigma]
    report = out / "analysis"
    report.mkdir(exist_ok=True)
    table = analysis.markdown_table([summary], radii)
    (report / "summary.md").write_text(table + "\n")
    analysis.plot_curves([summary], report / "curves.png")
    analysis.write_curves_csv([summary], report / "curves.csv")
    print()
    print(table)
    print()
    print(f"plot: {report / 'curves.png'}\ncurves: {report / 'curves.csv'}")
    print(f"rows: {out / 'rows.jsonl'}")


if __name__ == "__main__":
    sys.exit(main())
