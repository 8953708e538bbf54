"""Training checkpoints (orbax) and ``load_classifier(path)`` for certification.

The work directory's files other than the checkpoints: ``_workdir.py``.

Orbax writes each step into a temporary folder and renames it when complete, so a
killed run leaves either a whole checkpoint or none. Step numbers are finished epochs.
A step whose files were damaged later (disk, copy) is named in a warning and skipped:
loading and resuming fall back to the newest intact step.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax

from mrs_jax.models._fingerprint import (
    weights_fingerprint,
)

# The work directory's other files, re-exported for the trainer and the tests.
from mrs_jax.models._workdir import (
    CHECKPOINT_DIR as CHECKPOINT_DIR,
    METRICS_JSONL as METRICS_JSONL,
    MODEL_JSON as MODEL_JSON,
    append_metrics_row as append_metrics_row,
    check_resume as check_resume,
    check_workdir as check_workdir,
    json_normal as json_normal,
    latest_epoch as latest_epoch,
    meta_differences as meta_differences,
    read_metrics as read_metrics,
    read_model_meta as read_model_meta,
    write_model_meta as write_model_meta,
)

if TYPE_CHECKING:  # orbax loads with the first checkpoint, not with the package
    import orbax.checkpoint as ocp


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
