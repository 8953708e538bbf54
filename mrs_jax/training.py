"""Noise-augmented, data-parallel training of base classifiers (MRS_SPEC section 7).

Each step draws, per image, a square of integer width uniform in [w_min, w_max] at a
uniform position and adds N(0, sigma^2) noise inside it (or over the whole image), with
optional random crops and flips first. SGD with momentum, weight decay and a cosine or
step schedule. The batch axis is sharded over all devices of a 1-D mesh and the
parameters are replicated, so BatchNorm statistics and gradients cover the global batch.

Resumption: the data order of epoch ``e`` is ``default_rng([seed, e]).permutation`` and
the augmentation key of step ``s`` is ``fold_in(fold_in(key(seed), e), s)``, so the
finished-epoch count in a checkpoint is all the RNG state a resumed run needs.
"""

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from mrs_jax import checkpoint as ckpt
from mrs_jax import sharding as placement
from mrs_jax.data import dataset_source
from mrs_jax.models import as_classifier, get_model
from mrs_jax.noise import masked_noise_augment, random_flip_crop


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Static training settings.

    Attributes:
        dataset: a :func:`mrs_jax.data.dataset_source` name.
        data_dir: folder for cifar10 pickles or tensorflow-datasets data.
        model: a :func:`mrs_jax.models.get_model` name.
        model_kwargs: extra model arguments as ``((name, value), ...)``.
        num_classes: K (also used for ``synthetic`` data).
        image_shape: (H, W, C) of ``synthetic`` data.
        synthetic_examples: train-split size of ``synthetic`` data (test: a quarter).
        epochs: number of epochs.
        batch_size: global batch; must divide by the device count.
        learning_rate: peak learning rate.
        momentum: SGD (Nesterov) momentum.
        weight_decay: L2 weight decay added to the gradient.
        schedule: ``cosine`` (with ``warmup_epochs`` linear warm-up) or ``step``
            (x0.1 at 50% and 75% of training).
        warmup_epochs: linear warm-up length for ``cosine``.
        sigma: noise standard deviation in [0, 1] pixel units.
        w_min, w_max: inclusive range of square widths.
        full_image_noise: noise on the whole image instead of a square.
        flip_crop: random horizontal flips and 4-pixel-padded random crops.
        max_steps_per_epoch: cap on steps per epoch (smoke runs), or None.
        max_eval_examples: cap on test examples evaluated, or None.
        eval_batch_size: batch for evaluation (rounded up to the device count).
        seed: seeds initialisation, data order and augmentation.
        keep_checkpoints: how many epoch checkpoints orbax keeps.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "small_cnn"
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    num_classes: int = 10
    image_shape: tuple[int, int, int] = (32, 32, 3)
    synthetic_examples: int = 256
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    sigma: float = 0.5
    w_min: int = 5
    w_max: int = 10
    full_image_noise: bool = False
    flip_crop: bool = False
    max_steps_per_epoch: int | None = None
    max_eval_examples: int | None = None
    eval_batch_size: int = 256
    seed: int = 0
    keep_checkpoints: int = 2

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.sigma < 0 or self.weight_decay < 0:
            raise ValueError("learning_rate must be > 0, sigma and weight_decay >= 0")
        if self.schedule not in ("cosine", "step"):
            raise ValueError(f"schedule must be cosine or step; got {self.schedule!r}")
        if not 1 <= self.w_min <= self.w_max:
            raise ValueError(
                f"need 1 <= w_min <= w_max; got {self.w_min}, {self.w_max}"
            )


def augment(key: jax.Array, images: jax.Array, config: TrainConfig) -> jax.Array:
    """Training augmentation of ``images: [B, H, W, C]``; the result is not clipped."""
    crop_key, noise_key = jax.random.split(key)
    if config.flip_crop:
        keys = jax.random.split(crop_key, images.shape[0])
        images = jax.vmap(random_flip_crop)(keys, images)
    w_max = min(config.w_max, *images.shape[1:3])
    w_min = min(config.w_min, w_max)
    return masked_noise_augment(
        noise_key, images, config.sigma, w_min, w_max, config.full_image_noise
    )


def make_optimizer(
    config: TrainConfig, steps_per_epoch: int
) -> optax.GradientTransformation:
    """SGD with Nesterov momentum, weight decay and the configured schedule."""
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "cosine":
        warmup = min(total - 1, int(config.warmup_epochs * steps_per_epoch))
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, config.learning_rate, warmup, total
        )
    else:
        schedule = optax.piecewise_constant_schedule(
            config.learning_rate, {int(total * 0.5): 0.1, int(total * 0.75): 0.1}
        )
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.sgd(schedule, momentum=config.momentum, nesterov=True),
    )


@functools.lru_cache(maxsize=16)
def make_train_step(
    graphdef: nnx.GraphDef, config: TrainConfig, steps_per_epoch: int
) -> Callable:
    """A jitted ``step(state, opt_state, rest, images, labels, key)``, cached.

    ``state`` is ``{"params", "batch_stats"}`` and ``rest`` any other model state.
    Returns ``(state, opt_state, loss, accuracy)`` with the batch's mean loss and
    accuracy on the augmented images. Equal arguments give the same jitted function,
    so repeated runs in one process compile once.
    """
    tx = make_optimizer(config, steps_per_epoch)

    def loss_fn(params, batch_stats, rest, images, labels):
        # Fresh Variable objects at this trace level, so BatchNorm may update them.
        batch_stats = jax.tree.map(lambda x: x, batch_stats)
        model = nnx.merge(graphdef, params, batch_stats, rest)
        logits = model(images)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, (logits, nnx.state(model, nnx.BatchStat))

    def step(state, opt_state, rest, images, labels, key):
        noisy = augment(key, images, config)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (logits, batch_stats)), grads = grad_fn(
            state["params"], state["batch_stats"], rest, noisy, labels
        )
        updates, opt_state = tx.update(grads, opt_state, state["params"])
        params = optax.apply_updates(state["params"], updates)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
        return {"params": params, "batch_stats": batch_stats}, opt_state, loss, accuracy

    return jax.jit(step, donate_argnums=(0, 1))


@functools.lru_cache(maxsize=16)
def _eval_counts(config: TrainConfig) -> Callable:
    """Jitted once per config: ``(classify, images, labels, valid, key) -> hits``."""
    noise_config = dataclasses.replace(config, flip_crop=False)

    @jax.jit
    def counts(classify, images, labels, valid, key):
        noisy = augment(key, images, noise_config)
        # One forward pass over both halves: half the program to compile.
        predicted = jnp.argmax(classify(jnp.concatenate([images, noisy])), -1)
        hits = (predicted == jnp.concatenate([labels, labels])) & jnp.concatenate(
            [valid, valid]
        )
        clean_hits, noisy_hits = jnp.split(hits, 2)
        return clean_hits.sum(), noisy_hits.sum()

    return counts


def evaluate(
    classify, source, config: TrainConfig, mesh: jax.sharding.Mesh, key: jax.Array
) -> dict[str, float]:
    """Clean and noisy (training noise) accuracy on ``source``'s first examples."""
    count = len(source)
    if config.max_eval_examples is not None:
        count = min(count, config.max_eval_examples)
    devices = mesh.devices.size
    batch = math.ceil(min(config.eval_batch_size, max(count, 1)) / devices) * devices
    data_sharding = NamedSharding(mesh, P("data"))

    clean = noisy = 0
    for i, start in enumerate(range(0, count, batch)):
        indices = np.arange(start, min(start + batch, count))
        images, labels = source.get_batch(indices)
        valid = np.arange(batch) < len(indices)
        pad = batch - len(indices)
        images = np.pad(images, ((0, pad), (0, 0), (0, 0), (0, 0)))
        labels = np.pad(labels, (0, pad))
        args = placement.put((images, labels, valid), data_sharding)
        c, n = _eval_counts(config)(classify, *args, jax.random.fold_in(key, i))
        clean += int(c)
        noisy += int(n)
    return {
        "clean_accuracy": clean / max(count, 1),
        "noisy_accuracy": noisy / max(count, 1),
    }


def _load_sources(config: TrainConfig):
    kwargs = dict(
        data_dir=config.data_dir,
        image_shape=config.image_shape,
        num_classes=config.num_classes,
        seed=config.seed,
    )
    train = dataset_source(
        config.dataset, "train", num_examples=config.synthetic_examples, **kwargs
    )
    test_split = "validation" if config.dataset == "imagenet2012" else "test"
    test = dataset_source(
        config.dataset,
        test_split,
        num_examples=max(1, config.synthetic_examples // 4),
        **kwargs,
    )
    return train, test


def train(
    config: TrainConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Trains ``config.model`` and checkpoints every epoch into ``workdir``.

    Args:
        config: the settings.
        workdir: output folder (``model.json``, ``metrics.jsonl``, ``checkpoints/``).
        resume: continue from the latest checkpoint in ``workdir`` (if any).
        init_from: warm start: a workdir or checkpoint whose weights initialise the
            model (same architecture); the optimiser and epoch count start afresh.
        progress: show a tqdm bar (None: only on a terminal).

    Returns:
        The last epoch's metrics row (``epoch``, ``loss``, ``train_accuracy``,
        ``clean_accuracy``, ``noisy_accuracy``, ``seconds``).

    Raises:
        FloatingPointError: the loss became NaN or infinite.
        ValueError: batch size not divisible by the device count, or an existing
            workdir with a different model and ``resume`` set.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    devices = jax.device_count()
    if config.batch_size % devices:
        raise ValueError(
            f"batch_size={config.batch_size} must be divisible by the {devices} devices"
        )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = jax.make_mesh((devices,), ("data",), (jax.sharding.AxisType.Auto,))
    replicated = NamedSharding(mesh, P())
    data_sharding = NamedSharding(mesh, P("data"))

    train_source, test_source = _load_sources(config)
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
    graphdef, params, batch_stats, rest = nnx.split(
        model, nnx.Param, nnx.BatchStat, ...
    )
    state = {"params": params, "batch_stats": batch_stats}
    tx = make_optimizer(config, steps_per_epoch)
    opt_state = tx.init(state["params"])
    state, opt_state = placement.put((state, opt_state), replicated)

    meta = {
        "model": config.model,
        "num_classes": config.num_classes,
        "model_kwargs": model_kwargs,
        "image_shape": list(train_source.image_shape),
        "dataset": config.dataset,
        "sigma": config.sigma,
        "w_min": config.w_min,
        "w_max": config.w_max,
        "full_image_noise": config.full_image_noise,
    }
    manager = ckpt.checkpoint_manager(workdir, config.keep_checkpoints)
    start_epoch = 0
    if resume and manager.latest_step() is not None:
        old = ckpt.read_model_meta(workdir)
        new = json.loads(json.dumps(meta))  # tuples read back from JSON as lists
        changed = sorted(k for k in new if old.get(k) != new[k])
        if changed:
            raise ValueError(
                f"workdir {workdir} holds a run with different {changed} "
                f"({old}); use another workdir"
            )
        state, opt_state, saved = ckpt.restore_checkpoint(manager, state, opt_state)
        start_epoch = int(saved["epoch"])
    elif init_from is not None:
        warm_model, _ = ckpt.load_model(init_from)
        _, warm_params, warm_stats, _ = nnx.split(
            warm_model, nnx.Param, nnx.BatchStat, ...
        )
        state = placement.put(
            {"params": warm_params, "batch_stats": warm_stats}, replicated
        )
    elif manager.latest_step() is not None:
        raise ValueError(
            f"workdir {workdir} already has checkpoints: pass resume=True (--resume) "
            "or choose another workdir"
        )
    # Every process computes the same rows; process 0 alone writes files.
    writer = jax.process_index() == 0
    metrics_path = workdir / ckpt.METRICS_JSONL
    rows = ckpt.read_metrics(metrics_path, start_epoch)
    if writer:
        ckpt.write_model_meta(workdir, meta)
        metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    step_fn = make_train_step(graphdef, config, steps_per_epoch)
    root_key = jax.random.key(config.seed)
    row = rows[-1] if rows else {}
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        epoch_key = jax.random.fold_in(root_key, epoch)
        order = np.random.default_rng([config.seed, epoch]).permutation(
            len(train_source)
        )
        losses, accuracies = [], []
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=True
            if not writer
            else (None if progress is None else not progress),
            leave=False,
        )
        for step in bar:
            indices = order[step * config.batch_size : (step + 1) * config.batch_size]
            images, labels = train_source.get_batch(indices)
            images, labels = placement.put((images, labels), data_sharding)
            state, opt_state, loss, accuracy = step_fn(
                state,
                opt_state,
                rest,
                images,
                labels,
                jax.random.fold_in(epoch_key, step),
            )
            loss, accuracy = float(loss), float(accuracy)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"loss is {loss} at epoch {epoch + 1}, step {step + 1}; lower "
                    "learning_rate or sigma"
                )
            losses.append(loss)
            accuracies.append(accuracy)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}")
        bar.close()
        trained = nnx.merge(graphdef, state["params"], state["batch_stats"], rest)
        scores = evaluate(
            as_classifier(trained),
            test_source,
            config,
            mesh,
            jax.random.fold_in(jax.random.key(config.seed + 1), epoch),
        )
        row = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "train_accuracy": float(np.mean(accuracies)),
            **scores,
            "seconds": time.perf_counter() - started,
        }
        # Row first, checkpoint second: a resume drops rows past the checkpoint.
        if writer:
            ckpt.append_metrics_row(metrics_path, row)
        ckpt.save_checkpoint(manager, epoch + 1, state, opt_state, {"epoch": epoch + 1})
        if progress is not False and writer:
            tqdm.write(
                f"epoch {epoch + 1}: loss {row['loss']:.4f} clean "
                f"{row['clean_accuracy']:.4f} noisy {row['noisy_accuracy']:.4f}"
            )
    manager.close()
    return row
