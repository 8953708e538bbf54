"""Noise-augmented, data-parallel training of base classifiers (MRS_SPEC section 7).

Each step draws, per image, a square of integer width uniform in [w_min, w_max] at a
uniform position and adds N(0, sigma^2) noise inside it (or over the whole image), with
optional random crops and flips first; ``augmentation="occlusion"`` fills random squares
with the mask value instead (a PatchCleanser base model). SGD with momentum, weight
decay and a cosine or step schedule. The batch axis is sharded over all devices of a
1-D mesh and the parameters are replicated, so BatchNorm statistics and gradients cover
the global batch.

Resumption: the data order of epoch ``e`` is ``default_rng([seed, e]).permutation`` and
the augmentation key of step ``s`` is ``fold_in(fold_in(key(seed), e), s)``, so the
finished-epoch count in a checkpoint is all the RNG state a resumed run needs.
"""

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from mrs_jax import models as ckpt
from mrs_jax.core import checks as _checks, progress_bar, runlock, sharding as placement
from mrs_jax.data import iterate_batches
from mrs_jax.models import as_classifier, get_model
from mrs_jax.training._config import TrainConfig, check_config as _check_config
from mrs_jax.training._data import data_sources
from mrs_jax.training._evaluate import DivergedError, augment, clean_view, evaluate
from mrs_jax.training._optimizer import make_optimizer
from mrs_jax.training._step import all_finite, check_step, diverged, make_train_step


@dataclasses.dataclass
class _Run:
    """What the epochs of one training run share; ``state`` and ``opt_state`` move."""

    config: TrainConfig
    mesh: jax.sharding.Mesh
    train_source: Any
    test_source: Any
    steps_per_epoch: int
    graphdef: nnx.GraphDef
    rest: Any
    state: Any
    opt_state: Any
    writer: bool  # every process computes the same rows; process 0 writes files


def _build_state(config: TrainConfig, init_from: str | Path | None) -> _Run:
    """Checks the data and ``init_from``, and builds the model and optimiser state."""
    devices = jax.device_count()
    if config.batch_size % devices:
        raise ValueError(
            f"batch_size={config.batch_size} must be divisible by the {devices} devices"
        )
    mesh = jax.make_mesh((devices,), ("data",), (jax.sharding.AxisType.Auto,))
    train_source, test_source = data_sources(config)
    steps_per_epoch = len(train_source) // config.batch_size
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    if steps_per_epoch < 1:
        raise ValueError(
            f"batch_size={config.batch_size} exceeds the {len(train_source)} "
            "training examples"
        )
    model_kwargs = dict(config.model_kwargs)
    model = get_model(
        config.model, num_classes=config.num_classes, seed=config.seed, **model_kwargs
    )
    if config.whiten_examples > 0:
        _init_whitening(model, config, train_source)
    graphdef, params, batch_stats, rest = nnx.split(
        model, nnx.Param, nnx.BatchStat, ...
    )
    if init_from is not None:  # the weights of init_from, the rest of this model
        architecture = {"model": config.model, "num_classes": config.num_classes}
        architecture["model_kwargs"] = model_kwargs
        warm = ckpt.load_warm_start(init_from, architecture)
        _, params, batch_stats, _ = nnx.split(warm, nnx.Param, nnx.BatchStat, ...)
    state = {"params": params, "batch_stats": batch_stats}
    opt_state = make_optimizer(config, steps_per_epoch).init(state["params"])
    state, opt_state = placement.put((state, opt_state), NamedSharding(mesh, P()))
    writer = jax.process_index() == 0
    return _Run(
        config, mesh, train_source, test_source, steps_per_epoch,
        graphdef, rest, state, opt_state, writer,
    )  # fmt: skip


def _init_whitening(model: nnx.Module, config: TrainConfig, source) -> None:
    """Sets the model's whitening layer from ``whiten_examples`` training images.

    With ``whiten_augmented`` the images first get the training augmentation
    (flips, crops and noise, with a fixed key): the layer whitens what the
    network sees in training, noise squares included; without it, the clean
    images (encoded whole for ``augmentation="ablation"``).
    """
    if not hasattr(model, "init_whitening"):
        raise ValueError(
            f"whiten_examples={config.whiten_examples} needs a model with a "
            f"whitening layer; {config.model!r} has none"
        )
    count = min(config.whiten_examples, len(source))
    order = np.random.default_rng([config.seed, 2]).permutation(len(source))
    images, _ = source.get_batch(np.sort(order[:count]))
    if config.whiten_augmented:
        key = jax.random.fold_in(jax.random.key(config.seed), 2**31 - 1)
        images = np.asarray(augment(key, jnp.asarray(images), config))
    else:
        images = np.asarray(clean_view(jnp.asarray(images), config))
    model.init_whitening(images)


def _flip_parity(config: TrainConfig, size: int) -> np.ndarray | None:
    """Which images start mirrored, for ``flip_mode="alternating"`` (else None)."""
    if config.flip_mode != "alternating":
        return None
    return np.random.default_rng([config.seed, 3]).integers(0, 2, size).astype(bool)


def _model_meta(config: TrainConfig, source) -> dict[str, Any]:
    """``model.json``: what loading needs, and the whole config to check resumes.

    ``classes``: the class names in label order, where the data names them
    (image folders); a certification job refuses a split that names others.
    """
    image_shape = source.image_shape
    classes = getattr(source, "classes", None)
    return {
        "model": config.model,
        "num_classes": config.num_classes,
        "model_kwargs": dict(config.model_kwargs),
        "image_shape": list(image_shape),
        "dataset": config.dataset,
        "sigma": config.sigma,
        "w_min": config.w_min,
        "w_max": config.w_max,
        "full_image_noise": config.full_image_noise,
        "config": ckpt.json_normal(dataclasses.asdict(config)),
        **({} if classes is None else {"classes": [str(c) for c in classes]}),
    }


def _restore_or_init(
    run: _Run, manager, workdir: Path, meta: dict[str, Any], resume: bool
) -> int:
    """Restores the newest intact checkpoint into ``run``; returns its epoch count.

    A fresh work dir (no checkpoint) starts at epoch 0. Checkpoints without
    ``resume``, or a stored config other than ``meta``'s, are refused.
    """
    if manager.latest_step() is None:
        return 0
    if not resume:
        raise ValueError(
            f"workdir {workdir} already has checkpoints: pass resume=True (--resume) "
            "or choose another workdir"
        )
    ckpt.check_resume(workdir, meta)
    run.state, run.opt_state, saved, broken = ckpt.restore_intact(
        manager, run.state, run.opt_state
    )
    if broken:
        # The damaged epochs are trained and saved again.
        if run.writer:
            ckpt.set_aside(manager, broken)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("mrs_jax.training._train.set_aside")
            manager.reload()
    return int(saved["epoch"])


def _run_epoch(run: _Run, epoch: int, step_fn: Callable, progress) -> dict[str, Any]:
    """Trains one epoch and evaluates; returns its metrics row."""
    started = time.perf_counter()
    losses, accuracies = _train_steps(run, epoch, step_fn, progress)
    scores = _evaluate_epoch(run, epoch)
    return {
        "epoch": epoch + 1,
        "loss": float(np.mean(losses)),
        "train_accuracy": float(np.mean(accuracies)),
        **scores,
        "seconds": time.perf_counter() - started,
    }


def _train_steps(
    run: _Run, epoch: int, step_fn: Callable, progress
) -> tuple[list[float], list[float]]:
    """One epoch's steps, in the epoch's seeded order; each step's loss and
    accuracy (a non-finite loss or weights stops the run)."""
    config = run.config
    data_sharding = NamedSharding(run.mesh, P("data"))
    epoch_key = jax.random.fold_in(jax.random.key(config.seed), epoch)
    order = np.random.default_rng([config.seed, epoch]).permutation(
        len(run.train_source)
    )
    losses, accuracies = [], []
    bar = progress_bar(
        run.steps_per_epoch,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        unit="step",
        enabled=progress if run.writer else False,
        later=(config.epochs - epoch - 1) * run.steps_per_epoch,
        iterable=range(run.steps_per_epoch),
    )
    steps = range(run.steps_per_epoch) if bar is None else bar
    # A streamed source decodes the next batches while this one trains.
    used = order[: run.steps_per_epoch * config.batch_size]
    parity = _flip_parity(config, len(run.train_source))
    batches = iterate_batches(run.train_source, used, config.batch_size)
    for step, (images, labels) in zip(steps, batches, strict=True):
        images, labels = placement.put((images, labels), data_sharding)
        key = jax.random.fold_in(epoch_key, step)
        flips = None
        if parity is not None:
            chosen = used[step * config.batch_size : (step + 1) * config.batch_size]
            flips = placement.put(parity[chosen] ^ bool(epoch % 2), data_sharding)
        run.state, run.opt_state, loss, accuracy = step_fn(
            run.state, run.opt_state, run.rest, images, labels, key, flips
        )
        weights_finite = all_finite((run.state, run.opt_state))
        loss, accuracy = float(loss), float(accuracy)
        check_step(config, epoch, step, loss, bool(weights_finite))
        losses.append(loss)
        accuracies.append(accuracy)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}")
    if bar is not None:
        bar.close()
    return losses, accuracies


def _evaluate_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """The trained weights' clean and noisy test accuracy after ``epoch``."""
    config = run.config
    trained = nnx.merge(
        run.graphdef, run.state["params"], run.state["batch_stats"], run.rest
    )
    eval_key = jax.random.fold_in(jax.random.key(config.seed + 1), epoch)
    try:
        return evaluate(
            as_classifier(trained), run.test_source, config, run.mesh, eval_key
        )
    except DivergedError as error:  # finite weights, overflowing logits
        raise diverged(config, f"in epoch {epoch + 1}", str(error)) from None


def _write_epoch(run: _Run, manager, metrics_path: Path, row: dict, progress) -> None:
    """Appends the row, then saves the checkpoint (a resume drops rows past it)."""
    if run.writer:
        ckpt.append_metrics_row(metrics_path, row)
    epoch = row["epoch"]
    ckpt.save_checkpoint(manager, epoch, run.state, run.opt_state, {"epoch": epoch})
    if progress is not False and run.writer:
        tqdm.write(
            f"epoch {epoch}: loss {row['loss']:.4f} clean "
            f"{row['clean_accuracy']:.4f} noisy {row['noisy_accuracy']:.4f}"
        )


def _lock_name() -> str:
    # One lock per process: a second run is refused, the processes of one are not.
    index = jax.process_index()
    return runlock.LOCK_FILE if index == 0 else f"{runlock.LOCK_FILE}-process-{index}"


def train(
    config: TrainConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Trains ``config.model`` and checkpoints every epoch into ``workdir``.

    Everything is checked (config, data labels, ``init_from``, ``workdir``) before
    anything is written; the work dir is then held by this run (an OS file lock,
    :mod:`mrs_jax.runlock`) until it returns.

    Args:
        config: the settings.
        workdir: output folder (``model.json``, ``metrics.jsonl``, ``checkpoints/``).
        resume: continue from the newest intact checkpoint in ``workdir`` (if any);
            the config must equal the one recorded in ``model.json``.
        init_from: warm start: a workdir or checkpoint whose weights initialise the
            model (same architecture); the optimiser and epoch count start afresh.
        progress: show progress (None or True: a tqdm bar on a terminal, a
            line a minute with the time left in a log file; False: none).

    Returns:
        The last epoch's metrics row (``epoch``, ``loss``, ``train_accuracy``,
        ``clean_accuracy``, ``noisy_accuracy``, ``seconds``).

    Raises:
        DivergedError: (a ``FloatingPointError`` and ``ValueError``) the loss or
            the weights (parameters, BatchNorm statistics, optimiser state)
            stopped being finite; checked after every step, so the diverged
            epoch is neither evaluated nor saved (earlier epochs are kept).
        ValueError: batch size not divisible by the device count, labels outside
            ``num_classes``, another model at ``init_from``, or an existing workdir
            with checkpoints and no ``resume`` or with a different config.
        NotADirectoryError, PermissionError: ``workdir`` cannot be written.
        mrs_jax.runlock.LockedError: another process holds ``workdir``.
    """
    _check_config(config)
    workdir = ckpt.check_workdir(workdir)
    resume = _checks.boolean(resume, "resume")
    if progress is not None:
        _checks.boolean(progress, "progress")
    if init_from is not None and not isinstance(init_from, (str, os.PathLike)):
        raise TypeError(f"init_from must be a path, got {type(init_from).__name__}")
    run = _build_state(config, init_from)
    meta = _model_meta(config, run.train_source)
    workdir.mkdir(parents=True, exist_ok=True)
    with runlock.hold(workdir, "work dir", name=_lock_name()):
        manager = ckpt.checkpoint_manager(workdir, config.keep_checkpoints)
        try:
            start_epoch = _restore_or_init(run, manager, workdir, meta, resume)
            metrics_path = workdir / ckpt.METRICS_JSONL
            rows = ckpt.read_metrics(metrics_path, start_epoch)
            if run.writer:
                ckpt.write_model_meta(workdir, meta)
                metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            step_fn = make_train_step(run.graphdef, config, run.steps_per_epoch)
            row = rows[-1] if rows else {}
            for epoch in range(start_epoch, config.epochs):
                row = _run_epoch(run, epoch, step_fn, progress)
                _write_epoch(run, manager, metrics_path, row, progress)
        finally:
            manager.close()
    return row
