"""Loading a trained model from its checkpoint: ``load_classifier(path)`` for
certification, ``load_model`` and the trainer's warm start.

The model of ``model.json`` is built abstract (shapes and dtypes only) and the
checkpoint restored into it (:mod:`mrs_jax.models._checkpoint`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from mrs_jax.core import checks as _checks
from mrs_jax.models._checkpoint import checkpoint_manager, restore_intact
from mrs_jax.models._classifier import as_classifier
from mrs_jax.models._fingerprint import checkpoint_fingerprint, with_fingerprint
from mrs_jax.models._registry import get_model
from mrs_jax.models._workdir import (
    CHECKPOINT_DIR,
    MODEL_JSON,
    json_normal,
    read_model_meta,
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
