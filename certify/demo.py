"""``python -m certify.demo``: ``mrs-demo`` in a checkout.

See :mod:`mrs_jax.commands.demo`.
"""

import sys

from mrs_jax.commands.demo import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    sys.exit(main())
