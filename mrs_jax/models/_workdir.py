"""A training work directory's files, read and written without orbax.

A training work directory looks like::

    <workdir>/model.json          # model name, num_classes, kwargs, image shape,
                                  # and the whole training config (``config``)
    <workdir>/metrics.jsonl       # one JSON row per finished epoch
    <workdir>/checkpoints/<epoch>/{model,opt_state,progress}
    <workdir>/.lock               # held by the training process (mrs_jax.runlock)

``model.json`` is what loading needs and the whole training config, so that a
resume with another config is refused (:func:`check_resume`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MODEL_JSON = "model.json"
METRICS_JSONL = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"


def write_model_meta(workdir: str | Path, meta: dict[str, Any]) -> None:
    """Writes ``meta`` (must hold ``model``, ``num_classes``, ``image_shape``)."""
    for field in ("model", "num_classes", "image_shape"):
        if field not in meta:
            raise ValueError(f"meta is missing {field!r}")
    path = Path(workdir) / MODEL_JSON
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    tmp.replace(path)


def read_model_meta(workdir: str | Path) -> dict[str, Any]:
    """Reads ``<workdir>/model.json``.

    Raises:
        FileNotFoundError: no ``model.json``.
        ValueError: ``model.json`` is not a JSON object.
    """
    path = Path(workdir) / MODEL_JSON
    if not path.is_file():
        raise FileNotFoundError(f"no {MODEL_JSON} in {workdir}: not a training workdir")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object")
    _check_meta_fields(meta, path)
    return meta


def _check_meta_fields(meta: dict[str, Any], path: Path) -> None:
    """Refuses a present field of the wrong type, naming the file and field."""

    def bad(field: str, expected: str) -> ValueError:
        return ValueError(
            f"{path}: field {field!r} must be {expected}, got {meta[field]!r}"
        )

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if "model" in meta and not isinstance(meta["model"], str):
        raise bad("model", "a model name")
    if "num_classes" in meta and not (
        is_int(meta["num_classes"]) and meta["num_classes"] >= 2
    ):
        raise bad("num_classes", "an int >= 2")
    shape = meta.get("image_shape")
    if "image_shape" in meta and not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(is_int(d) and d > 0 for d in shape)
    ):
        raise bad("image_shape", "[H, W, C] of positive ints")
    if "model_kwargs" in meta and not isinstance(meta["model_kwargs"], dict):
        raise bad("model_kwargs", "a JSON object")
    sigma = meta.get("sigma")
    if sigma is not None and not (
        isinstance(sigma, (int, float)) and not isinstance(sigma, bool)
    ):
        raise bad("sigma", "a number or null")
    classes = meta.get("classes")
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    ):
        raise bad("classes", "a list of class names")


def meta_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the settings that differ between a stored and a new ``model.json``.

    With a ``config`` record on both sides every training-config field is compared;
    a ``model.json`` written before configs were recorded has only the model and
    noise keys, and only those are compared.
    """
    for name, value in (("old", old), ("new", new)):
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    new = json_normal(new)
    if isinstance(old.get("config"), dict) and "config" in new:
        old_config, new_config = old["config"], new["config"]
        return sorted(
            name
            for name in set(old_config) | set(new_config)
            if old_config.get(name) != new_config.get(name)
        )
    return sorted(k for k in new if k != "config" and old.get(k) != new[k])


def json_normal(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def check_workdir(workdir: Any) -> Path:
    """``workdir`` as a Path that is, or can be made, a writable folder.

    Raises:
        TypeError: not a path.
        NotADirectoryError: it, or a parent, is a file.
        PermissionError: the nearest existing folder is not writable.
    """
    if not isinstance(workdir, (str, os.PathLike)):
        raise TypeError(f"workdir must be a path, got {type(workdir).__name__}")
    path = Path(workdir)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"workdir {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"workdir {path}: no permission to write in {existing}")
    return path


def check_resume(workdir: str | Path, meta: dict[str, Any]) -> None:
    """Refuses to resume ``workdir`` with settings other than its ``model.json``.

    Raises:
        ValueError: naming each differing field with its stored and new value.
    """
    old = read_model_meta(workdir)
    changed = meta_differences(old, meta)
    if not changed:
        return
    new = json_normal(meta)
    if isinstance(old.get("config"), dict) and "config" in new:
        old, new = old["config"], new["config"]
    diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
    raise ValueError(
        f"workdir {workdir} holds a run with a different {', '.join(changed)} "
        f"({diffs}); resume with the same config or use another workdir"
    )


def latest_epoch(workdir: str | Path) -> int | None:
    """The newest finished epoch saved in ``workdir`` (None: none), without orbax.

    Orbax renames a step folder to its number only once the save is complete.
    """
    folder = Path(workdir) / CHECKPOINT_DIR
    steps = [int(p.name) for p in folder.glob("*") if p.name.isdigit()]
    return max(steps, default=None)


def read_metrics(path: Path, last_epoch: int) -> list[dict]:
    """Rows of finished epochs <= ``last_epoch``; drops a torn last line."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get("epoch", 0) <= last_epoch:
                rows.append(row)
    return rows


def append_metrics_row(path: Path, row: dict) -> None:
    """Appends one JSON row and flushes it."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
