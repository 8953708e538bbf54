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
import functools
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
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


@functools.lru_cache(maxsize=16)
def make_train_step(
    graphdef: nnx.GraphDef, config: TrainConfig, steps_per_epoch: int
) -> Callable:
    """A jitted ``step(state, opt_state, rest, images, labels, key, flips=None)``.

    ``state`` is ``{"params", "batch_stats"}`` and ``rest`` any other model state.
    Returns ``(state, opt_state, loss, accuracy)`` with the batch's mean loss and
    accuracy on the augmented images. Equal arguments give the same jitted function,
    so repeated runs in one process compile once.
    """
    if not isinstance(graphdef, nnx.GraphDef):
        kind = type(graphdef).__name__
        raise TypeError(f"graphdef must be an nnx.GraphDef, got {kind}")
    tx = make_optimizer(config, steps_per_epoch)

    def loss_fn(params, batch_stats, rest, images, labels):
        # Fresh Variable objects at this trace level, so BatchNorm may update them.
        batch_stats = jax.tree.map(lambda x: x, batch_stats)
        model = nnx.merge(graphdef, params, batch_stats, rest)
        logits = model(images)
        targets = optax.smooth_labels(
            jax.nn.one_hot(labels, logits.shape[-1]), config.label_smoothing
        )
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss, (logits, nnx.state(model, nnx.BatchStat))

    def step(state, opt_state, rest, images, labels, key, flips=None):
        noisy = augment(key, images, config, flips)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (logits, batch_stats)), grads = grad_fn(
            state["params"], state["batch_stats"], rest, noisy, labels
        )
        updates, opt_state = tx.update(grads, opt_state, state["params"])
        params = optax.apply_updates(state["params"], updates)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
        return {"params": params, "batch_stats": batch_stats}, opt_state, loss, accuracy

    return jax.jit(step, donate_argnums=(0, 1))


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    """Whether every float leaf of ``tree`` is finite (a device bool)."""
    leaves = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(leaf.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _diverged(config: TrainConfig, where: str, what: str) -> DivergedError:
    return DivergedError(
        f"training diverged {where}: {what} with learning_rate="
        f"{config.learning_rate:g} and sigma={config.sigma:g}; lower learning_rate "
        "(or sigma); no checkpoint of this epoch was saved"
    )


def _check_step(
    config: TrainConfig, epoch: int, step: int, loss: float, weights_finite: bool
) -> None:
    """Stops a diverging run at its first non-finite loss or weight."""
    where = f"at epoch {epoch + 1}, step {step + 1}"
    if not math.isfinite(loss):
        raise _diverged(config, where, f"the loss is {loss}")
    if not weights_finite:
        raise _diverged(config, where, "the weights are no longer finite")


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
    config = run.config
    started = time.perf_counter()
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
        weights_finite = _all_finite((run.state, run.opt_state))
        loss, accuracy = float(loss), float(accuracy)
        _check_step(config, epoch, step, loss, bool(weights_finite))
        losses.append(loss)
        accuracies.append(accuracy)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}")
    if bar is not None:
        bar.close()
    trained = nnx.merge(
        run.graphdef, run.state["params"], run.state["batch_stats"], run.rest
    )
    eval_key = jax.random.fold_in(jax.random.key(config.seed + 1), epoch)
    try:
        scores = evaluate(
            as_classifier(trained), run.test_source, config, run.mesh, eval_key
        )
    except DivergedError as error:  # finite weights, overflowing logits
        raise _diverged(config, f"in epoch {epoch + 1}", str(error)) from None
    return {
        "epoch": epoch + 1,
        "loss": float(np.mean(losses)),
        "train_accuracy": float(np.mean(accuracies)),
        **scores,
        "seconds": time.perf_counter() - started,
    }


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
