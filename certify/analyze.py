"""``python -m certify.analyze``: ``mrs-analyze`` in a checkout.

The program is :mod:`mrs_jax.commands.analyze`.
"""

import sys

from mrs_jax.commands.analyze import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    sys.exit(main())
