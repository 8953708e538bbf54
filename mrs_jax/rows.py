"""Append-only JSONL result rows that survive a kill and resume without loss.

Each finished image is one JSON line, written, flushed and fsynced before the job
moves on, so a kill loses at most the image in flight. On restart,
:func:`repair` cuts a half-written last line, and the job skips every index
already on disk. With several processes each writes its own shard file
(``rows-<p>-of-<P>.jsonl``), and :func:`merge` joins them, sorted by index, into
``rows.jsonl`` by an atomic rename.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROWS = "rows.jsonl"


def shard_path(
    out_dir: str | os.PathLike, process_index: int, process_count: int
) -> Path:
    """Where process ``process_index`` of ``process_count`` writes its rows."""
    if process_count == 1:
        return Path(out_dir) / ROWS
    return Path(out_dir) / f"rows-{process_index:03d}-of-{process_count:03d}.jsonl"


def repair(path: str | os.PathLike) -> None:
    """Cuts a truncated last line (no newline, or not valid JSON) from ``path``."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    keep = len(data)
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
    else:
        last_start = data.rfind(b"\n", 0, max(len(data) - 1, 0)) + 1
        try:
            if data[last_start:].strip():
                json.loads(data[last_start:])
        except json.JSONDecodeError:
            keep = last_start
    if keep != len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete rows of one file (after :func:`repair`), in file order."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{path}:{lineno}: not valid JSON: {error}"
                    ) from None
    return rows


def all_rows(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of ``rows.jsonl`` and every shard file, one per index, sorted by index.

    Raises:
      ValueError: two rows for one index disagree (the out dir mixes runs).
    """
    by_index: dict[int, dict[str, Any]] = {}
    paths = [
        Path(out_dir) / ROWS,
        *sorted(
            Path(p)
            for p in glob.glob(os.path.join(os.fspath(out_dir), "rows-*-of-*.jsonl"))
        ),
    ]
    for path in paths:
        repair(path)
        for row in read(path):
            index = int(row["index"])
            if index in by_index and _core(by_index[index]) != _core(row):
                raise ValueError(f"{path}: two different rows for index {index}")
            by_index[index] = row
    return [by_index[i] for i in sorted(by_index)]


def merge(out_dir: str | os.PathLike) -> Path:
    """Writes every row, sorted by index, to ``rows.jsonl`` atomically."""
    rows = all_rows(out_dir)
    target = Path(out_dir) / ROWS
    tmp = target.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target


class Writer:
    """Appends rows to one file, each flushed and fsynced before returning."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        repair(self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, row: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(dict(row), allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _core(row: Mapping[str, Any]) -> Iterable[Any]:
    # Timings differ between two runs of the same image; the results must not.
    return tuple(sorted((k, json.dumps(v)) for k, v in row.items() if k != "seconds"))
