"""Resuming a run: the same config and model, and only the run's own rows.

Refuses a resume whose config or model differs, naming what differs, a resume
by a classifier with no fingerprint, and rows with no ``run.json``
(:func:`check_resume`); refuses rows of another run, of an index the run never
asked for or of another image (:func:`check_rows_on_disk`,
``mrs_jax.rows.check_rows``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mrs_jax import rows
from mrs_jax.job._record import EXECUTION_FIELDS, GROWING_FIELD, MODEL_FIELDS
from mrs_jax.job._run_dir import RUN_FILE, read_run_file


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
