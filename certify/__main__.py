"""``python -m certify``: ``mrs-certify`` in a checkout.

The program is :mod:`mrs_jax.commands.certify`; ``main`` turns user errors into
one line (exit 2), ``run`` raises them.
"""

import sys

from mrs_jax.commands.certify import (
    INTERRUPTED,
    inference_classifier,
    load_checkpoint,
    main,
    run,
)

__all__ = ["INTERRUPTED", "inference_classifier", "load_checkpoint", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
