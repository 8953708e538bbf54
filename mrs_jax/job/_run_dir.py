"""The run directory: one writer, and its ``run.json``.

A certification run directory holds ``run.json`` (the config, the model and the
facts a reader needs), ``rows.jsonl`` (or one shard file per process) and a lock
file. This module holds the directory's OS lock for the life of a job
(:func:`hold`), so a second process on the same directory is refused at once,
naming the holder (the processes of one multi-process run each lock their own
shard); reads and writes ``run.json``; and refuses an ``--out`` that is empty or
cannot be a run directory (:func:`check_out_dir`) before anything is written.
What ``run.json`` records: ``_record.py``; resuming: ``_resume.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mrs_jax.core import runlock

RUN_FILE = "run.json"


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """Refuses an ``out_dir`` that is empty, a file or cannot be written; writes
    nothing.

    Raises:
      ValueError: ``out_dir`` is empty ("", an unset shell variable): it would
        make the current directory the run directory.
      NotADirectoryError: ``out_dir`` (or a parent) exists and is not a directory.
      PermissionError: ``out_dir`` (or the parent it would be made in) is not
        writable.
    """
    _check_not_empty(out_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir {out_dir} exists and is not a directory")
    existing = out_dir
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise NotADirectoryError(f"out_dir {out_dir}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"out_dir {out_dir}: no permission to write in {existing}"
        )
    return out_dir


def _check_not_empty(out_dir: Any) -> None:
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path, got {type(out_dir).__name__}")
    if not os.fspath(out_dir).strip():
        raise ValueError(
            f"out_dir is empty ({os.fspath(out_dir)!r}: an unset variable?); give "
            "the run directory's path"
        )


def lock_name(process_index: int, process_count: int) -> str:
    """The lock file of one process: the whole directory, or its own shard."""
    if process_count == 1:
        return runlock.LOCK_FILE
    return f"{runlock.LOCK_FILE}-{process_index:03d}-of-{process_count:03d}"


@contextlib.contextmanager
def hold(out_dir: Path, process_index: int, process_count: int) -> Iterator[Path]:
    """Holds the run directory for a ``with``: alone, or as one process of a run.

    A single-process run holds the directory's lock exclusively. Each process
    of a multi-process run holds it shared, and its own shard's exclusively:
    the processes of one run do not refuse each other, but a second process 0
    (say) or a single-process run on the same directory is refused.

    Raises:
      runlock.LockedError: another live process holds it; the message names it.
    """
    if process_count == 1:
        with runlock.hold(out_dir, "run directory") as path:
            yield path
        return
    # Shared by the processes of one run, so a single-process run is refused.
    with runlock.hold(out_dir, "run directory", shared=True):
        name = lock_name(process_index, process_count)
        with runlock.hold(out_dir, f"shard {name} of run directory", name=name) as path:
            yield path


def check_free(out_dir: str | os.PathLike, process_index: int, process_count: int):
    """Refuses at once if another process holds ``out_dir`` (or this shard).

    A cheap early probe for entry points, before a model loads; :func:`hold`
    still takes the lock for the job itself.

    Raises:
      runlock.LockedError: naming the holder.
      ValueError: ``out_dir`` is empty.
    """
    _check_not_empty(out_dir)
    if Path(out_dir).is_dir():
        with hold(Path(out_dir), process_index, process_count):
            pass


def read_run_file(out_dir: Path) -> dict[str, Any] | None:
    """``run.json`` of ``out_dir`` as a dict, or None when there is none."""
    path = Path(out_dir) / RUN_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return record


def write_run_file(out_dir: Path, record: Mapping[str, Any]) -> None:
    """Writes ``run.json`` atomically (a kill leaves the old file or the new);
    the processes of one run may each write the same record at once."""
    path = Path(out_dir) / RUN_FILE
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, path)
