"""Append-only JSONL result rows that survive a kill and resume without loss.

Each finished image is one JSON line, written, flushed and fsynced before the job
moves on, so a kill loses at most the image in flight. On restart,
:func:`repair` cuts a half-written last line, and the job skips every index
already on disk. With several processes each writes its own shard file
(``rows-<p>-of-<P>.jsonl``), and :func:`merge` joins them, sorted by index, into
``rows.jsonl`` by an atomic rename.

Every row carries what ties it to its run: its ``index`` (position in the run's
selection of images), ``dataset_index`` (which image that is) and the
``run_id`` of the ``run.json`` it was written under. :func:`check_rows` refuses
a row of another run, an index the run never asked for, or an image that is
not the run's for that index; a run written before run ids (legacy: no
``run_id`` in ``run.json`` nor in its rows) is still checked by index and image.
"""

from __future__ import annotations

import glob
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROWS = "rows.jsonl"
SHARD_GLOB = "rows-*-of-*.jsonl"


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


def read(path: str | os.PathLike, *, torn_tail: str = "error") -> list[dict[str, Any]]:
    """All complete rows of one file, in file order.

    Args:
      path: a JSONL file (missing: no rows).
      torn_tail: what to do with a last line cut short by a kill (no newline, or
        not JSON): "error" (call :func:`repair` first), or "skip" to leave it out
        with a warning and leave the file untouched (readers such as analysis
        must not write into a run another process may still be appending to).
    """
    if torn_tail not in ("error", "skip"):
        raise ValueError(f"torn_tail must be 'error' or 'skip', got {torn_tail!r}")
    path = Path(path)
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        lines = [(n, line) for n, line in enumerate(f, start=1) if line.strip()]
    rows = []
    for position, (lineno, line) in enumerate(lines):
        last = position == len(lines) - 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if last and torn_tail == "skip":
                warnings.warn(
                    f"{path}:{lineno}: skipping a truncated last line ({error})",
                    stacklevel=2,
                )
                break
            raise ValueError(f"{path}:{lineno}: not valid JSON: {error}") from None
        if last and torn_tail == "skip" and not line.endswith("\n"):
            warnings.warn(
                f"{path}:{lineno}: skipping an unfinished last line", stacklevel=2
            )
            break
        if not isinstance(row, dict) or "index" not in row:
            raise ValueError(f"{path}:{lineno}: expected a JSON object with an index")
        rows.append(row)
    return rows


def all_rows(out_dir: str | os.PathLike, *, repair_files: bool = True):
    """Rows of ``rows.jsonl`` and every shard file, one per index, sorted by index.

    The same row may sit in a shard and in the merged ``rows.jsonl`` (after a
    merge); it is read once. Anything else that gives one index two rows means
    two writers shared the run directory or runs were mixed, and is refused.

    Args:
      out_dir: a run directory.
      repair_files: cut a torn last line from each file first (the job does this
        before appending); False leaves files untouched and skips such a line
        with a warning (for readers).

    Raises:
      ValueError: one file holds two rows for one index, or two files hold
        different rows for one index (timings aside).
    """
    by_index: dict[int, dict[str, Any]] = {}
    where: dict[int, Path] = {}
    for path in row_files(out_dir):
        if repair_files:
            repair(path)
        seen_here: set[int] = set()
        for row in read(path, torn_tail="error" if repair_files else "skip"):
            index = int(row["index"])
            if index in seen_here:
                raise ValueError(
                    f"{path} holds two rows for index {index}: two processes "
                    "wrote into one run directory; these results cannot be trusted"
                )
            seen_here.add(index)
            if index in by_index and _core(by_index[index]) != _core(row):
                raise ValueError(
                    f"{path} and {where[index]} hold different rows for index "
                    f"{index}: the run directory mixes two runs"
                )
            by_index[index] = row
            where.setdefault(index, path)
    return [by_index[i] for i in sorted(by_index)]


def row_files(out_dir: str | os.PathLike) -> list[Path]:
    """``rows.jsonl`` (if present) and every shard file of a run directory."""
    merged = Path(out_dir) / ROWS
    shards = sorted(
        Path(p) for p in glob.glob(os.path.join(os.fspath(out_dir), SHARD_GLOB))
    )
    return [merged, *shards] if merged.exists() else shards


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


def selection(image_seed: int, source_size: int, num_images: int) -> np.ndarray:
    """The data set indices of a run's images: ``[num_images]`` int64.

    A run's images are the first ``num_images`` of one fixed permutation of its
    split (``source_size`` images), so a longer run extends a shorter one.
    """
    order = np.random.default_rng(image_seed).permutation(source_size)
    return order[:num_images]


def check_rows(
    rows: Sequence[Mapping[str, Any]],
    record: Mapping[str, Any],
    where: str | os.PathLike,
    *,
    source_size: int | None = None,
) -> None:
    """Refuses rows that are not this run's (host check, reads no files).

    A row belongs to the run of ``record`` (its ``run.json``) when its
    ``run_id`` is the record's (both absent in a legacy run), its ``index`` is
    in ``[0, num_images)`` and its ``dataset_index`` is the run's image for that
    index (:func:`selection`, when the record's ``config.image_seed`` and the
    split's size are known) and no other row's.

    Args:
      rows: the run's rows (e.g. :func:`all_rows`).
      record: the run's ``run.json``; ``num_images`` (top level or in
        ``config``), ``run_id``, ``source_size`` and ``config.image_seed`` are
        read where present (hand-written records may lack them).
      where: the run directory or run name, for messages.
      source_size: the split's size when the caller knows it (the job does);
        else the record's ``source_size``.

    Raises:
      ValueError: naming the first row that is not the run's and why.
    """
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    run_id = record.get("run_id")
    num_images = record.get("num_images", config.get("num_images"))
    if source_size is None:
        source_size = record.get("source_size")
    chosen = None
    seed = config.get("image_seed")
    if None not in (num_images, source_size, seed):
        chosen = selection(int(seed), int(source_size), int(num_images))
    images: dict[int, int] = {}
    for row in rows:
        index = row.get("index")
        if row.get("run_id") != run_id:
            raise ValueError(
                f"{where}: the row for index {index} belongs to another run "
                f"(run_id {row.get('run_id')!r}; this run's is {run_id!r}): "
                "remove it, or certify into the run directory it came from"
            )
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"{where}: a row has index {index!r}, not an int >= 0")
        if num_images is not None and index >= num_images:
            raise ValueError(
                f"{where}: the row for index {index} is outside this run's images "
                f"(num_images={num_images}): it is from another run or run.json "
                "was edited"
            )
        _check_image(row, index, chosen, images, where)


def _check_image(row, index, chosen, images, where) -> None:
    """The row's ``dataset_index`` is the run's image for ``index``, once."""
    if "dataset_index" not in row and chosen is None:
        return  # a hand-written legacy run: nothing to check it against
    image = row.get("dataset_index")
    if chosen is not None and image != int(chosen[index]):
        raise ValueError(
            f"{where}: the row for index {index} has dataset_index {image!r}, but "
            f"this run's image {index} is dataset_index {int(chosen[index])}: the "
            "row is from another run or was edited"
        )
    if image in images:
        raise ValueError(
            f"{where}: the rows for index {images[image]} and {index} are both of "
            f"dataset_index {image!r}: the rows mix two runs"
        )
    images[image] = index


class RowsChangedError(RuntimeError):
    """The rows file was replaced or changed by another program mid-run."""


class Writer:
    """Appends rows to one file, each flushed and fsynced before returning.

    Before each row it checks that the path still names the file it opened, at
    the size it left it: a ``git checkout``/``stash`` or an editor that replaces
    the file would otherwise leave every later row in a deleted file, and a
    truncation would leave gaps. Either raises :class:`RowsChangedError` and
    writes nothing; the rows on disk stay as they are, so the same command
    resumes from them.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        repair(self.path)
        self._file = open(self.path, "a", encoding="utf-8")
        self._size = os.fstat(self._file.fileno()).st_size
        self._written = 0

    def append(self, row: Mapping[str, Any]) -> None:
        line = json.dumps(dict(row), allow_nan=False) + "\n"
        self._check_unchanged()
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._size += len(line.encode("utf-8"))
        self._written += 1

    def _check_unchanged(self) -> None:
        mine = os.fstat(self._file.fileno())
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        same_file = on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (
            mine.st_dev,
            mine.st_ino,
        )
        if same_file and mine.st_size == self._size:
            return
        what = "replaced or removed" if not same_file else "changed in size"
        raise RowsChangedError(
            f"{self.path} was {what} by another program while this run wrote it "
            f"({self._written} rows written by this run); nothing more was written: "
            "rerun the same command to resume from the rows the file holds"
        )

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _core(row: Mapping[str, Any]) -> Iterable[Any]:
    # Timings differ between two runs of the same image; the results must not.
    return tuple(sorted((k, json.dumps(v)) for k, v in row.items() if k != "seconds"))
