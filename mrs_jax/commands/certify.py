r"""Certifies a trained classifier on test images, one flushed row per image.

Usage (``mrs-certify``, or ``python -m certify`` in a checkout)::

    mrs-certify --config digits --checkpoint runs/digits \
        --out runs/certify_digits [--smoke] [--num_images N] [--mode center] \
        [--images_per_batch B] [--cpu_devices N] [--config.sigma=0.25 ...]

``--config`` is a file (``certify/configs/digits.py``) or a shipped config's name,
``:smoke`` appended for its smoke variant; ``--config.FIELD=value`` changes any
field of the config (after ``--mode``, ``--num_images``, ``--images_per_batch``),
and ``run.json`` records the changed config.

On a CPU the host is split into one JAX device per core (``--cpu_devices``;
``mrs_jax.sharding.use_cpu_cores``) and the noise samples are sharded over them:
the same counts, about 1.3-1.4x the samples/s of one device on 2 cores. BatchNorm
is folded into the convolutions for inference where the model allows
(``mrs_jax.fold``; ``--no_fold`` certifies the model as trained); ``run.json`` says
which. A killed or interrupted job restarted with the same arguments continues where
it stopped. The run directory is held by one process at a time, and refuses a resume
with another config or checkpoint. A mistake (missing config, bad checkpoint,
unusable ``--out``) is one line ``error: ...`` and exit status 2 (``--debug`` or
``MRS_DEBUG=1`` for the traceback); Ctrl-C exits 130. For several processes (one per
host), add ``--coordinator_address HOST:PORT --num_processes P --process_id I`` (or
set ``MRS_COORDINATOR_ADDRESS``, ``MRS_NUM_PROCESSES``, ``MRS_PROCESS_ID``).
"""

from __future__ import annotations

import argparse
import sys

from mrs_jax import commands, job
from mrs_jax.commands import _cli as cli, _distributed as distributed
from mrs_jax.core import sharding

# The library's names of what the flags set: errors name the flag typed.
FLAGS = {"checkpoint_path": "--checkpoint", "out_dir": "--out"}

INTERRUPTED = "interrupted: finished rows are kept; rerun the same command to continue"


def main(argv: list[str] | None = None) -> int:
    """``mrs-certify``: :func:`run` with user errors as one line (exit 2) and
    Ctrl-C as exit 130."""
    return cli.main_guard(run, argv, interrupted=INTERRUPTED, flags=FLAGS)


def run(argv: list[str] | None = None) -> int:
    """Certifies as the command line asks; user errors raise (see :func:`main`)."""
    args, overrides = commands.parse_args(_parser(), argv)
    _use_cpu_cores(args.cpu_devices)
    config = _config(args, overrides)
    # Everything that needs no model is checked before the checkpoint loads.
    job.validate(config, args.out)
    processes = distributed.initialize_from(args)
    # A run directory held by another process is refused before the model loads.
    job.check_free(args.out, processes.index, processes.count)
    model, meta = _load_checkpoint(args.checkpoint)
    split = _features_and_head(model) if config.mode == "gradcam" else None
    _note_sigma(config, meta)
    # The classifier carries the checkpoint's fingerprint, which run.json records
    # (the one a library run of load_classifier records too).
    classify, folded = _classifier(model, fold=not args.no_fold)
    try:
        written = _run_job(args, config, classify, meta, split, folded, processes)
    except job.ProcessesDisagreeError as error:
        # The others fail the same way; JAX's shutdown at exit would wait.
        raise cli.ExitAtOnceError(str(error)) from None
    if processes.index == 0:
        print(job.summary(written))
    print(f"rows written to {args.out}")
    return 0


def _run_job(args, config, classify, meta, split, folded, processes):
    return job.run(
        config,
        args.out,
        classify=classify,
        num_classes=int(meta["num_classes"]),
        features_and_head=split,
        meta={"checkpoint": str(args.checkpoint), **meta, "batchnorm_folded": folded},
        process_index=processes.index,
        process_count=processes.count,
        progress=not args.no_progress,
        barrier=distributed.run_barrier(args.out, processes),
    )


def _parser() -> argparse.ArgumentParser:
    parser = commands.config_parser("certify", "certify", __doc__)
    parser.add_argument("--checkpoint", required=True, help="a training workdir")
    parser.add_argument("--out", required=True, help="the run directory")
    parser.add_argument("--smoke", action="store_true", help="the tiny variant")
    parser.add_argument(
        "--mode",
        choices=job.MODES,
        default=None,
        metavar="MODE",
        help=f"the job mode, one of {', '.join(job.MODES)} (default: the "
        "config's; the README's Jobs section says what each does)",
    )
    parser.add_argument(
        "--num_images",
        type=int,
        default=None,
        metavar="N",
        help="certify the first N test images of the config's order (default: "
        "the config's num_images)",
    )
    parser.add_argument(
        "--images_per_batch",
        type=int,
        default=None,
        help="images per device program in modes clean and practical "
        "(same rows; 1: image by image)",
    )
    parser.add_argument(
        "--no_fold",
        action="store_true",
        help="certify the model as trained, BatchNorm not folded into the convs",
    )
    parser.add_argument(
        "--cpu_devices",
        type=int,
        default=None,
        help="JAX devices to split the host CPU into (default: one per usable "
        "core; kept if XLA_FLAGS already sets a count)",
    )
    parser.add_argument(
        "--no_progress", action="store_true", help="no progress lines on stderr"
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    distributed.add_flags(parser)
    return parser


def _use_cpu_cores(cpu_devices: int | None) -> None:
    try:
        sharding.use_cpu_cores(cpu_devices)
    except ValueError as error:  # the range is the library's: say the flag
        raise cli.UsageError(str(error).replace("count", "--cpu_devices", 1)) from None


def _config(args: argparse.Namespace, overrides) -> job.JobConfig:
    # configfile names the file or the field in every error (missing, broken,
    # bad value).
    config, _ = commands.load_config(
        args,
        overrides,
        "certify",
        job.JobConfig,
        mode=args.mode,
        num_images=args.num_images,
        images_per_batch=args.images_per_batch,
    )
    return config


def _load_checkpoint(path: str):
    """Loads ``(model, meta)``, turning a broken work dir into one UsageError."""
    from mrs_jax.models import load_model

    cli.quiet_checkpoint_logs()
    try:
        return load_model(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError) as error:  # a damaged work dir
        detail = " ".join(str(error).split()) or type(error).__name__
        raise cli.UsageError(f"cannot load checkpoint {path}: {detail}") from error


def _features_and_head(model):
    from mrs_jax.models import features_and_head

    try:
        return features_and_head(model)
    except TypeError as error:
        raise cli.UsageError(
            f"mode 'gradcam' needs a model with a features/head split: {error}"
        ) from None


def _note_sigma(config: job.JobConfig, meta: dict) -> None:
    train_sigma = meta.get("sigma")
    if train_sigma is not None and float(train_sigma) != config.sigma:
        print(
            f"note: certifying at sigma {config.sigma:g}; the checkpoint was trained "
            f"at sigma {float(train_sigma):g} (both recorded in run.json)",
            flush=True,
        )


def _classifier(model, *, fold: bool):
    """``(classify, folded)``: the model with BatchNorm folded into its convs
    where ``fold`` and its family supports it (``mrs_jax.fold``: the same logits
    up to float rounding, ~10-25% more samples/s on a CPU), else as trained.

    The folded classifier is the base classifier f that is smoothed and
    certified. Either carries ``mrs_jax.models.checkpoint_fingerprint``: the
    checkpoint's stored weights and the choice, not the folded weights (folding
    rounds differently on different CPUs, and a run must resume on any
    machine). ``run.json``'s ``meta.batchnorm_folded`` says which was certified.
    """
    from mrs_jax.models import checkpoint_classifier

    if fold:
        try:
            return checkpoint_classifier(model, fold=True), True
        except TypeError as error:  # a family fold does not cover
            print(f"note: BatchNorm not folded: {error}", flush=True)
    return checkpoint_classifier(model, fold=False), False


if __name__ == "__main__":
    sys.exit(main())
