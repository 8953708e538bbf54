"""Command-line entry points: a user's mistake is one line, a bug a traceback.

:func:`main_guard` wraps an entry point's ``main``. Errors a user can fix (a
missing or broken config file, a value out of range, a bad checkpoint, an
unwritable ``--out``, a directory held by another process) are printed as one
line ``error: ...`` on stderr with exit status 2. Ctrl-C prints one line and
exits 130. Any other exception is a bug and keeps its traceback. ``--debug`` on
the command line, or ``MRS_DEBUG=1`` in the environment, shows the traceback of
user errors too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

USER_ERROR_EXIT = 2
INTERRUPT_EXIT = 130
DEBUG_ENV = "MRS_DEBUG"


class UsageError(ValueError):
    """A mistake in what the user asked for; printed as one line."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the user asked for something wrong"."""
    from mrs_jax.rows import RowsChangedError
    from mrs_jax.runlock import LockedError

    return (
        UsageError,
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
        LockedError,
        RowsChangedError,
    )


def debugging(argv: Sequence[str] | None) -> bool:
    """Whether tracebacks of user errors were asked for."""
    args = sys.argv[1:] if argv is None else list(argv)
    return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main_guard(
    main: Callable[[list[str] | None], int | None],
    argv: list[str] | None = None,
    *,
    interrupted: str = "interrupted",
) -> int:
    """Runs ``main(argv)`` and turns user errors into one line and an exit code.

    Args:
      main: the entry point; it may return an exit code (None means 0).
      argv: the arguments (None: ``sys.argv[1:]``).
      interrupted: the line printed on Ctrl-C (say what was kept).

    Returns:
      The exit status: ``main``'s, 2 for a user error, 130 for Ctrl-C.
    """
    debug = debugging(argv)
    try:
        code = main(argv)
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr, flush=True)
        return INTERRUPT_EXIT
    except user_errors() as error:
        if debug or _is_bug(error):
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr, flush=True)
        return USER_ERROR_EXIT
    return int(code or 0)


def _is_bug(error: BaseException) -> bool:
    # A TypeError about a call signature is our bug, not the user's input.
    text = str(error)
    return isinstance(error, TypeError) and (
        "positional argument" in text or "keyword argument" in text
    )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    filename = getattr(error, "filename", None)
    if isinstance(error, OSError) and filename and str(filename) not in text:
        text = f"{text}: {filename}"
    return text


class _DropReadOnlyNotes:
    """A logging filter for orbax's "read only" notes (absl WARNINGs)."""

    def filter(self, record) -> bool:
        message = record.getMessage().lower()
        return "read only" not in message and "read_only" not in message


def quiet_checkpoint_logs() -> None:
    """Silences orbax's read-only notes, which it logs on every read-only load.

    Only those notes are dropped; other warnings still print.
    """
    import logging

    note_filter = _DropReadOnlyNotes()
    for name in ("absl", ""):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropReadOnlyNotes) for f in logger.filters):
            logger.addFilter(note_filter)
        for handler in logger.handlers:
            if not any(isinstance(f, _DropReadOnlyNotes) for f in handler.filters):
                handler.addFilter(note_filter)
