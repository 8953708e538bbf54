"""``python -m certify``: ``mrs-certify`` in a checkout.

The program is :mod:`mrs_jax.commands.certify`; ``main`` turns user errors into
one line (exit 2), ``run`` raises them.
"""

import sys

if __name__ == "__main__":  # a Ctrl-C while JAX loads is raised by main_guard
    import signal

    class _HeldInterrupts(list):  # as mrs_jax.commands._cli.HeldInterrupts
        def __call__(self, signum, frame):
            self.append(signum)

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _HeldInterrupts())

from mrs_jax.commands.certify import main, run  # noqa: E402

__all__ = ["main", "run"]

if __name__ == "__main__":
    sys.exit(main())
