"""One process of the two-process certification test (run as a subprocess)."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
from _job_helpers import NUM_CLASSES, tiny_classifier, tiny_config  # noqa: E402

from mrs_jax import distributed, job  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", default="practical")
    distributed.add_flags(parser)
    args = parser.parse_args()
    processes = distributed.initialize_from(args)
    assert jax.process_count() == 2 and jax.local_device_count() == 2
    assert jax.device_count() == 4
    job.run(
        tiny_config(mode=args.mode),
        args.out,
        classify=tiny_classifier(),
        num_classes=NUM_CLASSES,
        process_index=processes.index,
        process_count=processes.count,
        barrier=processes.barrier,
        progress=False,
    )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
