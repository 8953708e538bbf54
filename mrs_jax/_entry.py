"""Holds a Ctrl-C that arrives while one of this project's programs is still
importing, so that the program's ``main_guard`` reports it as one line.

Python's default handler raises ``KeyboardInterrupt`` wherever the main thread
is, inside a half-imported jaxlib extension too (a traceback, an ``ImportError``
or a SIGSEGV). The programs (``mrs-train``, ``mrs-certify``, ``mrs-analyze``,
``mrs-demo``, and ``python -m train``, ``certify``, ``certify.analyze``,
``certify.demo`` in a checkout) import ``mrs_jax`` first, whose first line
imports this module, which calls :func:`hold_interrupts_of_programs`. A library
user's process is left alone: only a default handler in one of these programs
is replaced.
"""

import os
import signal
import sys

# The console scripts' names start with this; the checkout's modules are these.
SCRIPT_PREFIX = "mrs-"
MODULES = ("train.__main__", "certify.__main__", "certify.analyze", "certify.demo")


class HeldInterrupts(list):
    """A SIGINT handler that only records the signal, for a program while it
    imports; ``mrs_jax.commands._cli.main_guard`` raises a held Ctrl-C as its
    own."""

    def __call__(self, signum, frame) -> None:
        self.append(signum)


def is_program() -> bool:
    """Whether this process is one of the project's programs, still starting."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return script.startswith(SCRIPT_PREFIX) or getattr(spec, "name", None) in MODULES


def hold_interrupts_of_programs() -> None:
    """Installs :class:`HeldInterrupts` if this is a program whose SIGINT
    handler is still Python's default (an ignored SIGINT stays ignored)."""
    if not is_program():
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, HeldInterrupts())
    except ValueError:  # not the main thread: nothing to hold
        pass


hold_interrupts_of_programs()
