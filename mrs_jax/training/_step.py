"""One training step, jitted, and the checks that stop a diverging run."""

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mrs_jax.training._config import TrainConfig
from mrs_jax.training._evaluate import DivergedError, augment
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
def all_finite(tree: Any) -> jax.Array:
    """Whether every float leaf of ``tree`` is finite (a device bool)."""
    leaves = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(leaf.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def diverged(config: TrainConfig, where: str, what: str) -> DivergedError:
    """The error that stops a diverged run, with the settings to lower."""
    return DivergedError(
        f"training diverged {where}: {what} with learning_rate="
        f"{config.learning_rate:g} and sigma={config.sigma:g}; lower learning_rate "
        "(or sigma); no checkpoint of this epoch was saved"
    )


def check_step(
    config: TrainConfig, epoch: int, step: int, loss: float, weights_finite: bool
) -> None:
    """Stops a diverging run at its first non-finite loss or weight."""
    where = f"at epoch {epoch + 1}, step {step + 1}"
    if not math.isfinite(loss):
        raise diverged(config, where, f"the loss is {loss}")
    if not weights_finite:
        raise diverged(config, where, "the weights are no longer finite")
