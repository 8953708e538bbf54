"""Training checkpoints (orbax) and ``load_classifier(path)`` for certification.

The work directory's files other than the checkpoints: ``_workdir.py``.

Orbax writes each step into a temporary folder and renames it when complete, so a
killed run leaves either a whole checkpoint or none. Step numbers are finished epochs.
A step whose files were damaged later (disk, copy) is named in a warning and skipped:
loading and resuming fall back to the newest intact step.
"""

from __future__ import annotations

import contextlib
import functools
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
    graphdef, params, batch_stats, rest = _restore_target(workdir, meta)
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


def _restore_target(workdir: Path, meta: dict[str, Any]) -> tuple:
    """The model of ``model.json`` split into graph, params, batch stats and the
    rest; params and batch stats abstract (shapes, dtypes and the first device),
    so that nothing is initialised only to be overwritten."""

    def build() -> nnx.Module:
        return get_model(
            meta["model"],
            num_classes=int(meta["num_classes"]),
            seed=0,
            **meta.get("model_kwargs", {}),
        )

    try:
        abstract = nnx.eval_shape(build)
    except ValueError as err:  # an unknown model or model_kwargs name
        raise ValueError(f"{workdir / MODEL_JSON}: {err}") from None
    graphdef, params, batch_stats, rest = nnx.split(
        abstract, nnx.Param, nnx.BatchStat, ...
    )
    if jax.tree.leaves(rest):  # state outside the checkpoint: built for real
        graphdef, params, batch_stats, rest = nnx.split(
            build(), nnx.Param, nnx.BatchStat, ...
        )
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    on_device = functools.partial(_on_device, sharding=device)
    return (
        graphdef,
        jax.tree.map(on_device, params),
        jax.tree.map(on_device, batch_stats),
        rest,
    )


def _on_device(leaf: Any, sharding: jax.sharding.Sharding) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)
    return leaf


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
