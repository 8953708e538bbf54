"""One writer per directory: an OS file lock held for the life of a job.

A certification run directory or a training work dir is written by one process at
a time. :func:`hold` takes an exclusive, non-blocking ``fcntl.flock`` on a lock
file inside the directory and writes the holder (pid, host, command) into it; a
second process is refused at once with :class:`LockedError` naming the holder. The
OS drops the lock when the holder exits, however it exits (SIGKILL included), so a
stale lock file never blocks a resumed run.

Multi-process runs lock their own shard (``name`` differs per process), so the
processes of one run do not refuse each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"


class LockedError(RuntimeError):
    """Another live process holds the directory's lock."""


def lock_path(directory: str | os.PathLike, name: str = LOCK_FILE) -> Path:
    """Where the lock of ``directory`` (or of one shard, by ``name``) lives."""
    return Path(directory) / name


@contextlib.contextmanager
def hold(
    directory: str | os.PathLike,
    what: str = "directory",
    name: str = LOCK_FILE,
    *,
    shared: bool = False,
) -> Iterator[Path]:
    """Holds ``directory``'s lock for the ``with`` block.

    Args:
      directory: an existing directory (a run dir or a training work dir).
      what: how messages call the directory ("run directory", "work dir").
      name: the lock file's name; one per shard in multi-process runs.
      shared: take a shared lock: the processes of one multi-process run all
        hold the directory's lock shared (and their shard's exclusively), so
        none of them refuses another, while a single-process run, which needs
        it exclusively, is refused (and refuses them).

    Yields:
      The lock file's path.

    Raises:
      LockedError: another process holds the lock; the message names it.
      FileNotFoundError: ``directory`` does not exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{what} {directory} does not exist")
    path = lock_path(directory, name)
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise LockedError(
                f"{what} {directory} is in use by another process ({holder}); "
                "wait for it to finish or use another directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(_describe_self(shared))
        handle.flush()
        yield path
    finally:
        # Closing the file releases the lock (also done by the OS on any exit).
        handle.close()


def _describe_self(shared: bool = False) -> str:
    command = " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command[:200],
    }
    if shared:
        holder["shared"] = "one process of a multi-process run"
    return json.dumps(holder)
