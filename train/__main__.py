"""``python -m train``: ``mrs-train`` in a checkout.

The program is :mod:`mrs_jax.commands.train`; ``run`` turns user errors into one
line (exit 2), ``main`` raises them.
"""

import sys

from mrs_jax.commands.train import INTERRUPTED, main, run

__all__ = ["INTERRUPTED", "main", "run"]

if __name__ == "__main__":
    sys.exit(run())
