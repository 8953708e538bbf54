"""Certifies a trained classifier on test images, one flushed row per image.

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
import hashlib
import sys

from mrs_jax import commands, job
from mrs_jax import job as run_dir
from mrs_jax.commands import _cli as cli
from mrs_jax.commands import _distributed as distributed
from mrs_jax.core import sharding

INTERRUPTED = "interrupted: finished rows are kept; rerun the same command to continue"


def load_checkpoint(path: str):
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


def inference_classifier(model, *, fold: bool):
    """``(classify, folded)``: the model with BatchNorm folded into its convs
    where ``fold`` and its family supports it (``mrs_jax.fold``: the same logits
    up to float rounding, ~10-25% more samples/s on a CPU), else as trained.

    The folded classifier is the base classifier f that is smoothed and
    certified. ``run.json`` fingerprints the checkpoint's stored weights and
    the choice (:func:`stored_fingerprint`), not the folded weights: folding rounds
    differently on different CPUs (an AMD and an Intel VM gave two digests for
    one checkpoint), and a run must resume on any machine. ``run.json``'s
    ``meta.batchnorm_folded`` says which was certified.
    """
    from mrs_jax.models import as_classifier, folded_classifier

    if fold:
        try:
            return folded_classifier(model), True
        except TypeError as error:  # a family fold does not cover
            print(f"note: BatchNorm not folded: {error}", flush=True)
    return as_classifier(model), False


def stored_fingerprint(model, folded: bool) -> str:
    """The run directory's ``weights_sha256``, the same on every machine.

    A SHA-256 of the model's weights as the checkpoint stores them (BatchNorm
    not folded), and, where ``folded``, a SHA-256 of that digest and the word
    ``batchnorm_folded``: the folded and the unfolded classifier are two
    classifiers (a resume with the other is refused), but neither digest
    depends on how a CPU rounds the fold.
    """
    from mrs_jax.job import weights_fingerprint
    from mrs_jax.models import as_classifier

    digest = weights_fingerprint(as_classifier(model))
    if not folded:
        return digest
    return hashlib.sha256(f"{digest}:batchnorm_folded".encode()).hexdigest()


def run(argv: list[str] | None = None) -> int:
    """Certifies as the command line asks; user errors raise (see :func:`main`)."""
    parser = argparse.ArgumentParser(
        prog=commands.prog("certify"),
        description=__doc__,
        epilog=commands.OVERRIDES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands.add_config_flag(parser, "certify")
    parser.add_argument("--checkpoint", required=True, help="a training workdir")
    parser.add_argument("--out", required=True, help="the run directory")
    parser.add_argument("--smoke", action="store_true", help="the tiny variant")
    parser.add_argument("--mode", choices=job.MODES, default=None)
    parser.add_argument("--num_images", type=int, default=None)
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
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    distributed.add_flags(parser)
    args, overrides = commands.parse_args(parser, argv)
    if args.cpu_devices is not None and args.cpu_devices < 1:
        raise cli.UsageError(f"--cpu_devices must be >= 1, got {args.cpu_devices}")
    sharding.use_cpu_cores(args.cpu_devices)

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
    # Everything that needs no model is checked before the checkpoint loads.
    job.validate(config, args.out)
    processes = distributed.initialize_from(args)
    # A run directory held by another process is refused before the model loads.
    run_dir.check_free(args.out, processes.index, processes.count)
    from mrs_jax.models import features_and_head

    model, meta = load_checkpoint(args.checkpoint)
    split = None
    if config.mode == "gradcam":
        try:
            split = features_and_head(model)
        except TypeError as error:
            raise cli.UsageError(
                f"mode 'gradcam' needs a model with a features/head split: {error}"
            ) from None
    train_sigma = meta.get("sigma")
    if train_sigma is not None and float(train_sigma) != config.sigma:
        print(
            f"note: certifying at sigma {config.sigma:g}; the checkpoint was trained "
            f"at sigma {float(train_sigma):g} (both recorded in run.json)",
            flush=True,
        )
    classify, folded = inference_classifier(model, fold=not args.no_fold)
    job.run(
        config,
        args.out,
        classify=classify,
        fingerprint=stored_fingerprint(model, folded),
        num_classes=int(meta["num_classes"]),
        features_and_head=split,
        meta={"checkpoint": str(args.checkpoint), **meta, "batchnorm_folded": folded},
        process_index=processes.index,
        process_count=processes.count,
        progress=not args.no_progress,
        barrier=distributed.run_barrier(args.out, processes),
    )
    print(f"rows written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``mrs-certify``: one-line errors (exit 2), Ctrl-C exit 130."""
    return cli.main_guard(run, argv, interrupted=INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
