"""Training checkpoints (orbax) and ``load_classifier(path)`` for certification.

A training work directory looks like::

    <workdir>/model.json          # model name, num_classes, kwargs, image shape, ...
    <workdir>/metrics.jsonl       # one JSON row per finished epoch
    <workdir>/checkpoints/<epoch>/{model,opt_state,progress}

Orbax writes each step into a temporary folder and renames it when complete, so a
killed run leaves either a whole checkpoint or none. Step numbers are finished epochs.
"""

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from mrs_jax.models import as_classifier, get_model

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
    """Reads ``<workdir>/model.json``."""
    path = Path(workdir) / MODEL_JSON
    if not path.is_file():
        raise FileNotFoundError(f"no {MODEL_JSON} in {workdir}: not a training workdir")
    return json.loads(path.read_text())


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
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=False,
        create=not read_only,
        cleanup_tmp_directories=not read_only,
        read_only=read_only,
    )
    return ocp.CheckpointManager(
        Path(workdir).absolute() / CHECKPOINT_DIR,
        options=options,
        item_names=("model", "opt_state", "progress"),
    )


def save_checkpoint(
    manager: ocp.CheckpointManager,
    epoch: int,
    model_state: Any,
    opt_state: Any,
    progress: dict[str, Any],
) -> None:
    """Saves the model state (params and batch stats), optimiser state and progress."""
    manager.save(
        epoch,
        args=ocp.args.Composite(
            model=ocp.args.StandardSave(model_state),
            opt_state=ocp.args.StandardSave(opt_state),
            progress=ocp.args.JsonSave(progress),
        ),
    )
    manager.wait_until_finished()


def _abstract(tree: Any) -> Any:
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
    epoch = manager.latest_step() if epoch is None else epoch
    if epoch is None:
        raise FileNotFoundError(f"no checkpoint in {manager.directory}")
    items = {
        "model": ocp.args.StandardRestore(_abstract(model_state)),
        "progress": ocp.args.JsonRestore(),
    }
    if opt_state is not None:
        items["opt_state"] = ocp.args.StandardRestore(_abstract(opt_state))
    restored = manager.restore(epoch, args=ocp.args.Composite(**items))
    return (
        restored["model"],
        restored["opt_state"] if opt_state is not None else None,
        dict(restored["progress"]),
    )


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
    path = Path(checkpoint_path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint_path does not exist: {path}")
    workdir, epoch = _locate(path)
    meta = read_model_meta(workdir)
    model = get_model(
        meta["model"],
        num_classes=int(meta["num_classes"]),
        seed=0,
        **meta.get("model_kwargs", {}),
    )
    graphdef, params, batch_stats, rest = nnx.split(
        model, nnx.Param, nnx.BatchStat, ...
    )
    manager = checkpoint_manager(workdir, read_only=True)
    state, _, progress = restore_checkpoint(
        manager, {"params": params, "batch_stats": batch_stats}, epoch=epoch
    )
    model = nnx.merge(graphdef, state["params"], state["batch_stats"], rest)
    meta = dict(meta, epoch=int(progress["epoch"]))
    return model, meta


def load_classifier(checkpoint_path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Loads a trained base classifier by path alone.

    Args:
        checkpoint_path: a training workdir (latest checkpoint), its ``checkpoints``
            folder (latest) or one ``checkpoints/<epoch>`` folder.

    Returns:
        ``(classify, meta)``: ``classify(images [B, H, W, C] in [0, 1]) -> logits
        [B, K]`` as from :func:`mrs_jax.models.as_classifier` (eval mode, weights are
        pytree leaves), and ``meta`` with ``model``, ``num_classes``, ``image_shape``,
        ``model_kwargs``, training noise settings and ``epoch``.

    Raises:
        FileNotFoundError: no workdir or no checkpoint at ``checkpoint_path``.
    """
    model, meta = load_model(checkpoint_path)
    return as_classifier(model), meta
