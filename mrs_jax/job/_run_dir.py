"""The run directory's guarantees: one writer, resumable, no mixed runs or models.

A certification run directory holds ``run.json`` (the config, the model and the
facts a reader needs), ``rows.jsonl`` (or one shard file per process) and a lock
file. This module:

- holds the directory's OS lock for the life of a job (:func:`hold`), so a second
  process on the same directory is refused at once, naming the holder; the
  processes of one multi-process run each lock their own shard;
- records the classifier in ``run.json``: its weights fingerprint
  (``mrs_jax.models.classifier_fingerprint``: the checkpoint's, attached by
  ``load_classifier``, the same that ``mrs-certify`` records; else a SHA-256 of
  its weights; or the caller's ``fingerprint`` for a plain function), the model name,
  training data set, image shape and training sigma (:func:`model_record`),
  and refuses a resume whose config or model differs, naming what differs, a
  resume by a classifier with no fingerprint, and rows with no ``run.json``
  (:func:`check_resume`);
- gives each run a ``run_id`` (:func:`identify`) that every row carries, and
  refuses rows of another run, of an index the run never asked for or of
  another image (:func:`check_rows_on_disk`, ``mrs_jax.rows.check_rows``);
- refuses a checkpoint trained on another data set or image shape than the job's
  data (:func:`check_model_fits`), and an ``--out`` that is empty or cannot be a
  run directory (:func:`check_out_dir`), before anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mrs_jax import rows
from mrs_jax.core import runlock
from mrs_jax.models import (
    classifier_fingerprint,
    weights_fingerprint as weights_fingerprint,
)

RUN_FILE = "run.json"
# Config fields that set speed and memory, not the draws: CERTIFY's noise for draw
# i comes from fold_in(key, i) whatever the batch, so a resume may change them.
EXECUTION_FIELDS = (
    "batch_size",
    "localize_batch_size",
    "pc_batch_size",
    "images_per_batch",
)
# A run's images are the first num_images of one fixed permutation of the split,
# so a resume may ask for more of them (never fewer: rows past the end would stay).
GROWING_FIELD = "num_images"
# The facts about the classifier that a resumed run must share with the first.
MODEL_FIELDS = ("weights_sha256", "model", "dataset", "image_shape", "train_sigma")


def model_record(
    classify: Any, meta: Mapping[str, Any] | None, fingerprint: str | None = None
) -> dict[str, Any]:
    """The classifier's identity for ``run.json``: fingerprint and checkpoint facts.

    Args:
      classify: the base classifier (see ``mrs_jax.models.classifier_fingerprint``).
      meta: the checkpoint's ``model.json`` facts (``model``, ``dataset``,
        ``image_shape``, ``sigma`` = training sigma); missing ones are None.
      fingerprint: the caller's name for the weights (:func:`check_fingerprint`);
        recorded in place of the classifier's own when given.
    """
    meta = dict(meta or {})
    shape = meta.get("image_shape")
    if fingerprint is None:
        fingerprint = classifier_fingerprint(classify)
    return {
        "weights_sha256": fingerprint,
        "model": meta.get("model"),
        "dataset": meta.get("dataset"),
        "image_shape": None if shape is None else [int(v) for v in shape],
        "train_sigma": None if meta.get("sigma") is None else float(meta["sigma"]),
    }


def check_fingerprint(fingerprint: Any) -> str | None:
    """Checks a caller's weights fingerprint: None or a non-empty str.

    Raises:
      TypeError: not a str.
      ValueError: an empty (or blank) str.
    """
    if fingerprint is None:
        return None
    if not isinstance(fingerprint, str):
        raise TypeError(
            f"fingerprint must be a str naming the weights, got "
            f"{type(fingerprint).__name__}"
        )
    if not fingerprint.strip():
        raise ValueError("fingerprint must be a non-empty str naming the weights")
    return fingerprint


def run_id(record: Mapping[str, Any]) -> str:
    """A run's id: a hash of what decides its rows (config and model).

    Batch sizes and ``num_images`` are left out (they do not change a row), so
    the processes of one run, a resumed run and an extended one share it; a
    run of another config or model has another.
    """
    config = {
        k: v
        for k, v in record["config"].items()
        if k not in EXECUTION_FIELDS and k != GROWING_FIELD
    }
    identity = json.dumps({"config": config, "model": record["model"]}, sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def identify(
    out_dir: str | os.PathLike,
    record: Mapping[str, Any],
    *,
    source_size: int,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """``record`` completed for ``run.json``: fingerprint, split size, run id.

    A run keeps the ``run_id`` its ``run.json`` already has; a legacy run
    (``run.json`` written before run ids) stays legacy (``run_id`` None); a new
    run gets :func:`run_id`.

    Args:
      out_dir: the run directory (its ``run.json`` is read, if any).
      record: the job's record (``config``, ``model``, ...).
      source_size: the number of images in the run's split (for
        ``mrs_jax.rows.selection``).
      fingerprint: the caller's weights fingerprint, replacing the record's.
    """
    record = json.loads(json.dumps(record))  # a copy, as run.json reads back
    if fingerprint is not None:
        record["model"]["weights_sha256"] = fingerprint
    record["source_size"] = int(source_size)
    existing = read_run_file(Path(out_dir))
    record["run_id"] = (
        run_id(record) if existing is None else existing.get("run_id") or None
    )
    return record


def row_stamp(record: Mapping[str, Any]) -> dict[str, Any]:
    """What each row of the run carries to tie it to ``record``: its run id
    (nothing for a legacy run)."""
    return {} if record.get("run_id") is None else {"run_id": record["run_id"]}


def check_model_fits(
    meta: Mapping[str, Any] | None,
    dataset: str,
    image_shape: Sequence[int],
    classes: Sequence[str] | None = None,
) -> None:
    """Refuses a checkpoint trained on another data set, image shape or classes.

    ``classes``: the job's class names in label order (image folders); refused
    where the checkpoint's ``model.json`` names other ones, or the same ones
    in another order.

    Raises:
      ValueError: naming the checkpoint's and the job's values.
    """
    meta = meta or {}
    trained_on = meta.get("dataset")
    if trained_on is not None and trained_on != dataset:
        raise ValueError(
            f"the checkpoint was trained on dataset {trained_on!r} but the job "
            f"certifies {dataset!r}; use a checkpoint trained on {dataset!r}"
        )
    shape = meta.get("image_shape")
    if shape is not None and [int(v) for v in shape] != [int(v) for v in image_shape]:
        raise ValueError(
            f"the checkpoint was trained on images of shape {list(shape)} but the "
            f"job's {dataset!r} images have shape {list(image_shape)}"
        )
    trained = meta.get("classes")
    if trained is not None and classes is not None and list(trained) != list(classes):
        raise ValueError(
            f"the checkpoint's classes are {list(trained)} but the job's "
            f"{dataset!r} folders name {list(classes)} (labels are class folders "
            "in that order)"
        )


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


def check_resume(
    out_dir: Path,
    record: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Refuses to continue a run whose config or model differs from ``record``.

    Two kinds of change are allowed: the ``EXECUTION_FIELDS`` (batch sizes:
    speed and memory, not the draws), and a larger ``num_images`` (the run's
    images are a prefix of one fixed permutation, so more images extend it).
    The caller then rewrites ``run.json`` with the new record. Rows with no
    ``run.json`` (deleted, or copied without it) are refused, since nothing
    says which config wrote them; so is a resume by a classifier with no
    weights fingerprint (``record["model"]["weights_sha256"]`` None), which
    could be any model.

    Args:
      out_dir: the run directory.
      record: the new run's ``run.json`` record (``config``, ``model``).
      defaults: config fields' defaults: a field missing from the existing
        ``run.json`` (written before the field existed) counts as its default.

    Raises:
      ValueError: naming the config fields or model facts that differ, the
        rows files without ``run.json``, or the missing fingerprint.
    """
    existing = read_run_file(out_dir)
    if existing is None:
        _refuse_rows_without_record(out_dir)
        return
    new = json.loads(json.dumps(record))  # tuples read back as lists
    _check_same_config(out_dir, existing.get("config"), new["config"], defaults)
    _check_same_model(out_dir, existing.get("model"), new["model"])


def _refuse_rows_without_record(out_dir: Path) -> None:
    found = [p.name for p in rows.row_files(out_dir)]
    if found:
        raise ValueError(
            f"out_dir {out_dir} holds rows ({', '.join(found)}) but no "
            f"{RUN_FILE}, so nothing says which config and model wrote them; "
            f"restore its {RUN_FILE} or use a new out_dir"
        )


def _check_same_config(
    out_dir: Path, old: Any, new: Mapping[str, Any], defaults: Mapping[str, Any] | None
) -> None:
    """The same config but for execution fields and a larger ``num_images``."""
    # A run.json with no config at all matches nothing, defaults or not.
    old = {**dict(defaults or {}), **old} if isinstance(old, dict) else {}
    missing = object()
    changed = sorted(
        k
        for k in set(new) | set(old)
        if old.get(k, missing) != new.get(k, missing)
        and k not in EXECUTION_FIELDS
        and k != GROWING_FIELD
    )
    if changed:
        raise ValueError(
            f"out_dir {out_dir} holds a run with a different config (differs in "
            f"{changed}); rerun with the same config or use a new out_dir"
        )
    old_images, new_images = old.get(GROWING_FIELD), new.get(GROWING_FIELD)
    if old_images is not None and new_images is not None and new_images < old_images:
        raise ValueError(
            f"out_dir {out_dir} holds a run of num_images={old_images}; a resume "
            f"may extend it but not shrink it (got {new_images}): use a new out_dir"
        )


def _check_same_model(out_dir: Path, old: Any, new: Mapping[str, Any]) -> None:
    """A fingerprinted classifier, and the same one as the run's."""
    if new["weights_sha256"] is None:
        raise ValueError(
            f"out_dir {out_dir} holds a run, and classify has no weights "
            "fingerprint (a plain function, not a pytree of weights), so a resume "
            "cannot tell whether it is the model that wrote the rows: pass "
            "fingerprint= naming the weights from the first run on, or use a new "
            "out_dir"
        )
    if not isinstance(old, dict):
        raise ValueError(
            f"out_dir {out_dir} holds a run that recorded no model fingerprint "
            "(written by an older mrs-jax), so adding rows could mix two models; "
            "use a new out_dir"
        )
    changed = [
        f"{field} ({old.get(field)!r} -> {new[field]!r})"
        for field in MODEL_FIELDS
        if old.get(field) != new[field]
    ]
    if changed:
        raise ValueError(
            f"out_dir {out_dir} holds rows of another classifier: "
            f"{'; '.join(changed)}; use the same checkpoint or a new out_dir"
        )


def check_rows_on_disk(
    out_dir: Path,
    *,
    source_size: int,
    process_index: int,
    process_count: int,
    image_name: Callable[[int], str] | None = None,
) -> None:
    """Refuses rows on disk that are not the run's, and a rows file this process
    cannot append to, before anything (``run.json`` included) is written.

    Call it holding the run directory (:func:`hold`): a single process repairs
    a torn last line of every rows file first; a process of a multi-process
    run repairs only its own shard (the others may be mid-write) and skips a
    torn last line of the others.

    Args:
      out_dir: the run directory.
      source_size: the number of images in the run's split.
      process_index, process_count: this process's share of the run.
      image_name: the split's name of an image by index, where it has names
        (image folders): a row's ``image`` must still be its image.

    Raises:
      ValueError: a row of another run, index or image
        (``mrs_jax.rows.check_rows``), against the existing ``run.json``.
      OSError: this process's rows file exists and cannot be opened for
        appending (read-only, a directory), naming it.
    """
    own = rows.shard_path(out_dir, process_index, process_count)
    if own.exists():
        try:
            with open(own, "a", encoding="utf-8"):
                pass  # opening for append writes nothing
        except OSError as error:
            raise type(error)(
                f"{own} cannot be opened to append rows ({error.strerror}); make "
                "it writable or use a new out_dir"
            ) from None
    existing = read_run_file(out_dir)
    if existing is None:
        return
    began = existing.get("source_size")
    if began is not None and int(began) != int(source_size):
        raise ValueError(
            f"{out_dir}: the split held {began} images when this run began and "
            f"holds {source_size} now: the data changed; certify into a new out_dir"
        )
    if process_count == 1:
        on_disk = rows.all_rows(out_dir)
    else:
        rows.repair(own)
        on_disk = rows.all_rows(out_dir, repair_files=False)
    rows.check_rows(on_disk, existing, out_dir, source_size=source_size)
    if image_name is not None:
        _check_images_unchanged(on_disk, image_name, out_dir)


def _check_images_unchanged(on_disk, image_name, out_dir) -> None:
    """Each row's recorded ``image`` is still the file at its ``dataset_index``."""
    changed = [
        (row["index"], row["image"], image_name(row["dataset_index"]))
        for row in on_disk
        if "image" in row and row["image"] != image_name(row["dataset_index"])
    ]
    if changed:
        index, before, now = changed[0]
        raise ValueError(
            f"{out_dir}: the image folder changed since this run began: "
            f"{len(changed)} row(s) name other files (row {index} was written for "
            f"{before!r}, which is now {now!r}); certify into a new out_dir"
        )


def write_run_file(out_dir: Path, record: Mapping[str, Any]) -> None:
    """Writes ``run.json`` atomically (a kill leaves the old file or the new);
    the processes of one run may each write the same record at once."""
    path = Path(out_dir) / RUN_FILE
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, path)
