"""One process of the two-process certification tests (run as a subprocess).

Started with ``--coordinator_address ...`` flags, or with none under a
launcher's variables (SLURM's), which ``jax.distributed.initialize`` detects.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
from _job_helpers import NUM_CLASSES, tiny_classifier, tiny_config  # noqa: E402

from mrs_jax.commands import _cli as cli, _distributed as distributed
from mrs_jax.job import _run as job


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", default="practical")
    parser.add_argument("--num_images", type=int, default=None)
    parser.add_argument("--stale_s", type=float, default=30.0)
    distributed.add_flags(parser)
    args = parser.parse_args(argv)
    processes = distributed.initialize_from(args)
    assert jax.process_count() == 2 and jax.local_device_count() == 2
    assert jax.device_count() == 4
    barrier = distributed.run_barrier(
        args.out, processes, stale_s=args.stale_s, beat_s=min(2.0, args.stale_s / 4)
    )
    print(f"process {processes.index} started", file=sys.stderr, flush=True)
    changes = {}
    if args.num_images is not None:
        examples = max(64, args.num_images)
        changes = {"num_images": args.num_images, "synthetic_examples": examples}
    job.run(
        tiny_config(mode=args.mode, **changes),
        args.out,
        classify=tiny_classifier(),
        num_classes=NUM_CLASSES,
        process_index=processes.index,
        process_count=processes.count,
        barrier=barrier,
        progress=False,
    )
    jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
