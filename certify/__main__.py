"""``python -m certify``: ``mrs-certify`` in a checkout.

The program is :mod:`mrs_jax.commands.certify`; ``main`` turns user errors into
one line (exit 2), ``run`` raises them.
"""

import sys

# A Ctrl-C while JAX loads is held by mrs_jax/_entry.py and raised by main_guard.
from mrs_jax.commands.certify import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    sys.exit(main())
