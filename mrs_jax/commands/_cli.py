"""Command-line entry points: a user's mistake is one line, a bug a traceback.

:func:`main_guard` wraps an entry point's ``main``. Errors a user can fix (a
missing or broken config file, a value out of range, a bad checkpoint, an
unwritable ``--out``, a directory held by another process) are printed as one
line ``error: ...`` on stderr with exit status 2 (an :class:`ExitAtOnceError`,
such as a lost peer process, then exits without teardown). Ctrl-C prints one
line and exits 130, wherever it lands (:class:`InterruptGuard`; an entry point
holds it while it imports, :class:`HeldInterrupts`). Any other exception is a
bug and keeps its traceback. ``--debug`` on
the command line, or ``MRS_DEBUG=1`` in the environment, shows the traceback of
user errors too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from mrs_jax._entry import HeldInterrupts as HeldInterrupts

USER_ERROR_EXIT = 2
INTERRUPT_EXIT = 130
DEBUG_ENV = "MRS_DEBUG"


class UsageError(ValueError):
    """A mistake in what the user asked for; printed as one line."""


class ExitAtOnceError(UsageError):
    """A one-line error after which the process must skip its teardown.

    E.g. a lost peer process: ``jax.distributed``'s shutdown at exit would wait
    for it and then abort. :func:`main_guard` prints the line and ends the
    process with ``os._exit(2)``.
    """


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the user asked for something wrong"."""
    from mrs_jax.core import runlock
    from mrs_jax.rows import RowsChangedError

    return (
        UsageError,
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
        runlock.LockedError,
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
    flags: Mapping[str, str] | None = None,
) -> int:
    """Runs ``main(argv)`` and turns user errors into one line and an exit code.

    Ctrl-C ends ``main`` with one line and 130, every time (see
    :class:`InterruptGuard`): never inside an import, never swallowed. With
    ``argv=None`` (the process's own command line: a console script or
    ``python -m``) a failed or interrupted program first waits for its worker
    threads (:func:`join_worker_threads`), and an interrupted one then ends at
    once, ``os._exit(130)`` once logs and streams are flushed (rows and
    checkpoints are written synchronously): JAX may still be compiling in a
    worker thread, and the interpreter's teardown would free the runtime under
    it (SIGSEGV).

    Args:
      main: the entry point; it may return an exit code (None means 0).
      argv: the arguments (None: ``sys.argv[1:]``).
      interrupted: the line printed on Ctrl-C (say what was kept).
      flags: the library's names for the command's flags (``{"out_dir":
        "--out"}``): a user error's line says the flag the user typed.

    Returns:
      The exit status: ``main``'s, 2 for a user error, 130 for Ctrl-C.
    """
    debug = debugging(argv)
    with InterruptGuard(interrupted) as guard:
        try:
            guard.raise_held()
            code = int(main(argv) or 0)
        except KeyboardInterrupt:
            code = guard.report()
        except user_errors() as error:
            if debug or _is_bug(error):
                raise
            line = in_flags(_one_line(error), flags or {})
            print(f"error: {line}", file=sys.stderr, flush=True)
            if isinstance(error, ExitAtOnceError):
                flush_and_exit(USER_ERROR_EXIT)
            code = USER_ERROR_EXIT
        else:
            if code == INTERRUPT_EXIT:  # ``main`` printed its own line
                guard.reported = True
            elif guard.requested:  # swallowed in ``main``
                code = guard.report()
        if argv is None and code != 0:  # the process ends with this code
            join_worker_threads()
            if code == INTERRUPT_EXIT:
                # JAX compiles in worker threads: one still running when the
                # interpreter tears the runtime down dies with SIGSEGV.
                logging.shutdown()
                flush_and_exit(INTERRUPT_EXIT)
    return code


# Thread-pool workers that wait for work until their pool is shut down: joining
# one would wait the whole timeout (the decoders of a streamed image folder).
IDLE_POOL_PREFIXES = ("mrs-decode",)


def join_worker_threads(timeout_s: float = 120.0) -> None:
    """Waits (at most ``timeout_s``) for the threads Python waits for at exit.

    Image-decoding pool threads are not waited for: they hold no result and
    would only sit idle until the timeout.

    Python joins non-daemon threads only after its exit hooks have shut the
    thread-pool executors down, so a thread still working then fails; a
    checkpoint manager interrupted while it was being made left orbax's
    clean-up thread running, which ended an interrupted run with "cannot
    schedule new futures after interpreter shutdown" and its traceback.
    """
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        if thread.name.startswith(IDLE_POOL_PREFIXES):
            continue  # image decoders: idle until their pool shuts down
        thread.join(max(0.0, deadline - time.monotonic()))


def flush_and_exit(code: int) -> NoReturn:
    """Flushes stdout and stderr and ends the process now, without teardown."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or gone
            stream.flush()
    os._exit(code)


class InterruptGuard:
    """Ctrl-C as one clean KeyboardInterrupt in the main thread's own code.

    Python's default handler raises KeyboardInterrupt wherever the main thread
    is. Three places break a JAX program: inside an import (a half-initialised
    jaxlib extension module is freed, and the process dies with SIGSEGV, at
    once or at exit), inside a garbage-collector callback or ``__del__``
    (Python prints it and carries on: the run continues), and in code that
    swallows it. While the guard is active a Ctrl-C that lands in an import is
    raised again just after it; one raised where Python drops it is raised
    again in ordinary code; ``requested`` says that one came (even if ``main``
    swallowed it). A second Ctrl-C ends the process at once (``os._exit(130)``).

    Installed only in the main thread, over Python's default handler or a
    :class:`HeldInterrupts`: an ignored SIGINT (``nohup ... &``) or a user's own
    handler is left alone.
    """

    retry_s = 0.05

    def __init__(self, interrupted: str = "interrupted"):
        self.interrupted = interrupted  # the line to print
        self.reported = False
        self.caught = False  # a KeyboardInterrupt was raised
        self.pending = False  # one waits to be raised (an import was running)
        self._held: list = []
        self._previous_handler = None
        self._previous_hook = None
        self._retry: threading.Timer | None = None

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is not threading.main_thread():
            return self
        handler = signal.getsignal(signal.SIGINT)
        if handler is signal.default_int_handler or _is_holder(handler):
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
            if _is_holder(self._previous_handler):
                self._held = list(self._previous_handler)
            self._previous_hook = sys.unraisablehook
            sys.unraisablehook = self._on_unraisable
        return self

    def __exit__(self, *exc_info) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self._previous_handler is not None:
            previous = self._previous_handler
            if _is_holder(previous):
                previous = signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
            sys.unraisablehook = self._previous_hook

    @property
    def requested(self) -> bool:
        """Whether Ctrl-C came while the guard was active."""
        return self.caught or self.pending

    def report(self) -> int:
        """Prints the interrupted line (once); returns 130."""
        if not self.reported:
            self.reported = True
            print(f"\n{self.interrupted}", file=sys.stderr, flush=True)
        return INTERRUPT_EXIT

    def raise_held(self) -> None:
        """Raises KeyboardInterrupt for a Ctrl-C held while the program loaded."""
        if self._held:
            self._held.clear()
            self.caught = True
            raise KeyboardInterrupt

    def _on_sigint(self, signum, frame) -> None:
        if self.caught:  # the second Ctrl-C: leave now
            flush_and_exit(self.report())
        if _in_import(frame):
            self._retry_soon()
            return
        self.caught, self.pending = True, False
        raise KeyboardInterrupt

    def _retry_soon(self) -> None:
        self.pending = True
        if self._retry is not None and self._retry.is_alive():
            return
        self._retry = threading.Timer(
            self.retry_s, signal.pthread_kill,
            (threading.main_thread().ident, signal.SIGINT),
        )  # fmt: skip
        self._retry.daemon = True
        self._retry.start()

    def _on_unraisable(self, unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # Python drops it here (gc callback, __del__): raise it again.
            self.caught = False
            self._retry_soon()
            return
        self._previous_hook(unraisable)


def _is_holder(handler) -> bool:
    return isinstance(handler, list) and callable(handler)


def _in_import(frame) -> bool:
    """Whether ``frame`` runs inside an import (importlib's frames below it)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _is_bug(error: BaseException) -> bool:
    # A TypeError about a call signature is our bug, not the user's input.
    text = str(error)
    return isinstance(error, TypeError) and (
        "positional argument" in text or "keyword argument" in text
    )


def in_flags(text: str, flags: Mapping[str, str]) -> str:
    """``text`` with each library argument name (a whole word) replaced by the
    command-line flag that sets it; a "(--flag)" hint after a name is dropped."""
    for name, flag in flags.items():
        word = rf"(?<![-\w]){re.escape(name)}\b(=True)?( \({re.escape(flag)}\))?"
        text = re.sub(word, flag, text)
    return text


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
    note_filter = _DropReadOnlyNotes()
    for name in ("absl", ""):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropReadOnlyNotes) for f in logger.filters):
            logger.addFilter(note_filter)
        for handler in logger.handlers:
            if not any(isinstance(f, _DropReadOnlyNotes) for f in handler.filters):
                handler.addFilter(note_filter)
