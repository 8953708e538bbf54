"""Certifies a trained classifier on test images, one flushed row per image.

Usage::

    python -m certify --config certify/configs/digits.py --checkpoint runs/digits \
        --out runs/certify_digits [--smoke] [--num_images N] [--mode center]

A killed job restarted with the same arguments continues where it stopped. For
several processes (one per host), add ``--coordinator_address HOST:PORT
--num_processes P --process_id I`` (or set ``MRS_COORDINATOR_ADDRESS``,
``MRS_NUM_PROCESSES``, ``MRS_PROCESS_ID``).
"""

import argparse
import dataclasses

from mrs_jax import configfile, distributed, job


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m certify", description=__doc__)
    parser.add_argument("--config", required=True, help="a certify/configs/*.py file")
    parser.add_argument("--checkpoint", required=True, help="a training workdir")
    parser.add_argument("--out", required=True, help="the run directory")
    parser.add_argument("--smoke", action="store_true", help="the tiny variant")
    parser.add_argument("--mode", choices=job.MODES, default=None)
    parser.add_argument("--num_images", type=int, default=None)
    parser.add_argument("--no_progress", action="store_true")
    distributed.add_flags(parser)
    args = parser.parse_args(argv)

    processes = distributed.initialize_from(args)
    config = configfile.load(args.config, args.smoke, job.JobConfig)
    overrides = {"mode": args.mode, "num_images": args.num_images}
    config = dataclasses.replace(
        config, **{k: v for k, v in overrides.items() if v is not None}
    )
    from mrs_jax.checkpoint import load_model
    from mrs_jax.models import as_classifier, features_and_head

    model, meta = load_model(args.checkpoint)
    job.run(
        config,
        args.out,
        classify=as_classifier(model),
        num_classes=int(meta["num_classes"]),
        features_and_head=features_and_head(model),
        meta={"checkpoint": str(args.checkpoint), **meta},
        process_index=processes.index,
        process_count=processes.count,
        progress=not args.no_progress,
        barrier=processes.barrier,
    )
    print(f"rows written to {args.out}/rows.jsonl")


if __name__ == "__main__":
    main()
