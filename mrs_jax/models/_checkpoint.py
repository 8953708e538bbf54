"""Training checkpoints (orbax) and ``load_classifier(path)`` for certification.

A training work directory looks like::

    <workdir>/model.json          # model name, num_classes, kwargs, image shape,
                                  # and the whole training config (``config``)
    <workdir>/metrics.jsonl       # one JSON row per finished epoch
    <workdir>/checkpoints/<epoch>/{model,opt_state,progress}
    <workdir>/.lock               # held by the training process (mrs_jax.runlock)

Orbax writes each step into a temporary folder and renames it when complete, so a
killed run leaves either a whole checkpoint or none. Step numbers are finished epochs.
A step whose files were damaged later (disk, copy) is named in a warning and skipped:
loading and resuming fall back to the newest intact step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
from flax import nnx

from mrs_jax.core import checks as _checks
from mrs_jax.models._classifier import as_classifier
from mrs_jax.models._fingerprint import (
    checkpoint_fingerprint,
    weights_fingerprint,
    with_fingerprint,
)
from mrs_jax.models._registry import get_model

if TYPE_CHECKING:  # orbax loads with the first checkpoint, not with the package
    import orbax.checkpoint as ocp

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


def load_warm_start(init_from: str | Path, expected: dict[str, Any]) -> nnx.Module:
    """The model of checkpoint ``init_from``, whose ``model.json`` must match.

    Args:
        init_from: as ``checkpoint_path`` of :func:`load_model`.
        expected: ``model.json`` values the checkpoint must have (the architecture).


    Raises:
        FileNotFoundError, ValueError: no readable checkpoint at ``init_from``, or
            one of another architecture (the message names ``init_from``).
    """
    try:
        model, meta = load_model(init_from)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"init_from {init_from}: {err}") from err
    changed = sorted(k for k in expected if meta.get(k) != json_normal(expected[k]))
    if changed:
        raise ValueError(
            f"init_from {init_from} holds another model: "
            + ", ".join(
                f"{k} {meta.get(k)!r}, config has {json_normal(expected[k])!r}"
                for k in changed
            )
        )
    return model


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


def checkpoint_manager(
    workdir: str | Path, max_to_keep: int = 2, read_only: bool = False
) -> ocp.CheckpointManager:
    """An orbax manager for ``<workdir>/checkpoints`` (synchronous saves).

    A writer removes temporary folders left by a killed save; a ``read_only`` reader
    (e.g. certification while training runs) leaves them alone.
    """
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        # A reader's options agree with read_only, so orbax has nothing to override.
        max_to_keep=None if read_only else max_to_keep,
        save_interval_steps=0 if read_only else 1,
        enable_async_checkpointing=False,
        create=not read_only,
        cleanup_tmp_directories=not read_only,
        read_only=read_only,
    )
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(_read_only_notice)
    try:
        return ocp.CheckpointManager(
            Path(workdir).absolute() / CHECKPOINT_DIR,
            options=options,
            item_names=("model", "opt_state", "progress"),
        )
    finally:
        absl_logger.removeFilter(_read_only_notice)


def _read_only_notice(record: logging.LogRecord) -> bool:
    """False for orbax's notice that a reader's manager is read-only (asked for)."""
    return not str(record.msg).startswith("Given directory is read only")


def save_checkpoint(
    manager: ocp.CheckpointManager,
    epoch: int,
    model_state: Any,
    opt_state: Any,
    progress: dict[str, Any],
) -> None:
    """Saves the model state (params and batch stats), optimiser state and progress.

    ``progress`` also records a SHA-256 of the model state
    (``weights_sha256``), checked when the step is restored, so a damaged
    file is found rather than loaded. Ctrl-C during the save is held back until
    the save has finished, so an interrupt never leaves a half-written step (or
    a traceback from orbax's writer threads) behind.
    """
    import orbax.checkpoint as ocp

    with _interrupts_deferred():
        manager.save(
            epoch,
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(model_state),
                opt_state=ocp.args.StandardSave(opt_state),
                progress=ocp.args.JsonSave(
                    dict(progress, weights_sha256=weights_fingerprint(model_state))
                ),
            ),
        )
        manager.wait_until_finished()


@contextlib.contextmanager
def _interrupts_deferred():
    """Holds SIGINT back for the ``with`` block, then delivers it (main thread).

    Delivered under the disposition that was in place before: a Python handler
    runs (the default one raises KeyboardInterrupt), an ignored SIGINT (a job
    started with ``nohup ... &``) stays ignored, SIG_DFL ends the process.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)


def _abstract(tree: Any) -> Any:
    import orbax.checkpoint as ocp

    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def restore_checkpoint(
    manager: ocp.CheckpointManager,
    model_state: Any,
    opt_state: Any | None = None,
    epoch: int | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Restores a checkpoint into trees shaped like the given ones.

    Args:
        manager: from :func:`checkpoint_manager`.
        model_state: target tree (its shapes, dtypes and shardings are used).
        opt_state: target tree, or None to skip the optimiser state.
        epoch: step to restore; None for the latest.

    Returns:
        ``(model_state, opt_state or None, progress dict)``.
    """
    import orbax.checkpoint as ocp

    epoch = manager.latest_step() if epoch is None else epoch
    if epoch is None:
        raise FileNotFoundError(f"no checkpoint in {manager.directory}")
    items = {
        "model": ocp.args.StandardRestore(_abstract(model_state)),
        "progress": ocp.args.JsonRestore(),
    }
    if opt_state is not None:
        items["opt_state"] = ocp.args.StandardRestore(_abstract(opt_state))
    where = f"{Path(manager.directory) / str(epoch)}"
    try:
        restored = manager.restore(epoch, args=ocp.args.Composite(**items))
    except ValueError as error:
        if "tree structure" not in str(error) and "shape" not in str(error):
            raise
        raise ValueError(
            f"{MODEL_JSON} and the weights in {where} disagree (another "
            "architecture, or an edited model, num_classes or model_kwargs)"
        ) from None
    saved = restored["progress"].get("weights_sha256")
    if saved is not None and saved != weights_fingerprint(restored["model"]):
        raise ValueError(
            f"damaged checkpoint: {where} (its weights differ from the digest "
            "saved with them)"
        )
    return (
        restored["model"],
        restored["opt_state"] if opt_state is not None else None,
        dict(restored["progress"]),
    )


def restore_intact(
    manager: ocp.CheckpointManager,
    model_state: Any,
    opt_state: Any | None = None,
    epoch: int | None = None,
) -> tuple[Any, Any, dict[str, Any], list[int]]:
    """:func:`restore_checkpoint` of ``epoch``, or of the newest intact step.

    With ``epoch=None`` the steps are tried newest first; each unreadable one is
    named in a warning and the next older one is tried.

    Returns:
        ``(model_state, opt_state or None, progress, broken)``: ``broken`` lists the
        unreadable steps newer than the restored one.

    Raises:
        FileNotFoundError: no checkpoint at all.
        ValueError: the requested ``epoch`` or every step is unreadable (the
            message names each step and its error).
    """
    steps = sorted(manager.all_steps(), reverse=True)
    if epoch is not None:
        if epoch not in steps:
            raise FileNotFoundError(
                f"no checkpoint of step {epoch} in {manager.directory}; "
                f"steps: {sorted(steps)}"
            )
        steps = [epoch]
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {manager.directory}")
    broken, errors = [], []
    for step in steps:
        try:
            restored = restore_checkpoint(manager, model_state, opt_state, step)
        # Damaged files surface as JSON, tensorstore, pytree or OS errors from
        # orbax; each one is named in the warning or error below.
        except Exception as err:  # noqa: BLE001
            reason = " ".join(str(err).split())[:300]
            errors.append(f"step {step}: {type(err).__name__}: {reason}")
            broken.append(step)
            continue
        if broken:
            warnings.warn(
                f"checkpoint step {broken[0]} in {manager.directory} is unreadable, "
                f"restored step {step} instead (newest intact). " + "; ".join(errors),
                stacklevel=2,
            )
        return (*restored, broken)
    raise ValueError(
        f"no readable checkpoint in {manager.directory}: " + "; ".join(errors)
    )


def set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> list[Path]:
    """Moves unreadable ``steps`` to ``<workdir>/broken_checkpoints/`` for a rerun.

    A resumed run saves those epochs again; the damaged folders are kept for
    inspection rather than deleted. Returns the new paths.
    """
    root = Path(manager.directory)
    moved = []
    for step in steps:
        target = root.parent / "broken_checkpoints" / str(step)
        suffix = 1
        while target.exists():
            target = target.with_name(f"{step}.{suffix}")
            suffix += 1
        target.parent.mkdir(exist_ok=True)
        shutil.move(str(root / str(step)), target)
        moved.append(target)
    manager.reload()
    return moved


def _locate(path: Path) -> tuple[Path, int | None]:
    """Finds (workdir, epoch or None) from a workdir, its checkpoints or a step dir."""
    for workdir, epoch in (
        (path, None),
        (path.parent, None),
        (path.parent.parent, int(path.name) if path.name.isdigit() else None),
    ):
        if (workdir / MODEL_JSON).is_file():
            return workdir, epoch
    raise FileNotFoundError(
        f"{path} is not a training workdir, its {CHECKPOINT_DIR}/ folder or one "
        f"checkpoint in it (no {MODEL_JSON} found)"
    )


def load_model(checkpoint_path: str | Path) -> tuple[nnx.Module, dict[str, Any]]:
    """Rebuilds the trained model from a checkpoint; see :func:`load_classifier`."""
    if not isinstance(checkpoint_path, (str, os.PathLike)):
        raise TypeError(
            f"checkpoint_path must be a path, got {type(checkpoint_path).__name__}"
        )
    path = Path(checkpoint_path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint_path does not exist: {path}")
    workdir, epoch = _locate(path)
    meta = read_model_meta(workdir)
    missing = [k for k in ("model", "num_classes", "image_shape") if k not in meta]
    if missing:
        raise ValueError(f"{workdir / MODEL_JSON} lacks {missing}")
    try:
        model = get_model(
            meta["model"],
            num_classes=int(meta["num_classes"]),
            seed=0,
            **meta.get("model_kwargs", {}),
        )
    except ValueError as err:  # an unknown model or model_kwargs name
        raise ValueError(f"{workdir / MODEL_JSON}: {err}") from None
    graphdef, params, batch_stats, rest = nnx.split(
        model, nnx.Param, nnx.BatchStat, ...
    )
    manager = checkpoint_manager(workdir, read_only=True)
    try:
        state, _, progress, _ = restore_intact(
            manager, {"params": params, "batch_stats": batch_stats}, epoch=epoch
        )
    finally:
        manager.close()
    model = nnx.merge(graphdef, state["params"], state["batch_stats"], rest)
    meta = dict(meta, epoch=int(progress["epoch"]))
    return model, meta


def load_classifier(
    checkpoint_path: str | Path, *, fold: bool = True
) -> tuple[Any, dict[str, Any]]:
    """Loads a trained base classifier by path alone, ready for fast inference.

    Args:
        checkpoint_path: a training workdir (latest checkpoint), its ``checkpoints``
            folder (latest) or one ``checkpoints/<epoch>`` folder.
        fold: True (default): BatchNorm folded into the convolutions where the
            model's family allows it (:func:`mrs_jax.fold.folded_classifier`):
            the same logits up to float rounding, ~10-25% more samples/s on a
            CPU, as ``python -m certify`` runs it. False: the model as trained
            (another classifier, so another fingerprint in a run directory).
            ``meta["folded"]`` says which was returned.

    Returns:
        ``(classify, meta)``: ``classify(images [B, H, W, C] in [0, 1]) -> logits
        [B, K]`` as from :func:`checkpoint_classifier` (eval mode, weights are
        pytree leaves, the checkpoint's fingerprint attached: a run directory
        records the one ``mrs-certify`` records), and ``meta`` with ``model``,
        ``num_classes``, ``image_shape``, ``model_kwargs``, training noise
        settings, ``epoch`` and ``folded``.

    An unreadable latest checkpoint is named in a warning and the newest intact
    one is loaded instead (``meta["epoch"]`` says which).

    Raises:
        FileNotFoundError: no workdir or no checkpoint at ``checkpoint_path``.
        ValueError: the requested checkpoint, or every one, is unreadable.
    """
    fold = _checks.boolean(fold, "fold")
    model, meta = load_model(checkpoint_path)
    if fold:
        try:
            return checkpoint_classifier(model, fold=True), dict(meta, folded=True)
        except TypeError:  # a model family that fold does not cover
            pass
    return checkpoint_classifier(model, fold=False), dict(meta, folded=False)


def checkpoint_classifier(model: nnx.Module, *, fold: bool) -> Any:
    """The classifier that certification runs for a loaded checkpoint's model.

    ``classify(images [B, H, W, C] in [0, 1]) -> logits [B, K]``: BatchNorm
    folded into the convolutions where ``fold``
    (:func:`mrs_jax.fold.folded_classifier`), else the model as trained
    (:func:`as_classifier`), with :func:`checkpoint_fingerprint` attached, which
    does not depend on how a CPU rounds the fold (read it with
    :func:`classifier_fingerprint`).

    Raises:
        TypeError: ``fold`` and the model's family is one fold does not cover.
    """
    if fold:
        from mrs_jax.models._fold import folded_classifier

        classify = folded_classifier(model)
    else:
        classify = as_classifier(model)
    return with_fingerprint(classify, checkpoint_fingerprint(model, folded=fold))
