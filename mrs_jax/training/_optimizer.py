"""The optimiser of a training run: SGD with Nesterov momentum and weight decay on
a schedule, and the recipe's parameter groups and lookahead average."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mrs_jax.core import checks as _checks
from mrs_jax.training._config import TrainConfig, check_config as _check_config


def _schedule(config: TrainConfig, total: int, steps_per_epoch: int):
    rate = config.learning_rate
    if config.schedule == "cosine":
        warmup = min(total - 1, int(config.warmup_epochs * steps_per_epoch))
        return optax.warmup_cosine_decay_schedule(0.0, rate, warmup, total)
    if config.schedule == "step":
        return optax.piecewise_constant_schedule(
            rate, {int(total * 0.5): 0.1, int(total * 0.75): 0.1}
        )
    start, peak, end = config.triangle
    peak_step = max(1, int(peak * total))
    return optax.join_schedules(
        [
            optax.linear_schedule(start * rate, rate, peak_step),
            optax.linear_schedule(rate, end * rate, max(1, total - peak_step)),
        ],
        [peak_step],
    )


def param_groups(config: TrainConfig, params: Any) -> Any:
    """The optimiser group of every parameter leaf of ``params`` (same tree).

    ``norm``: the parameters of a layer with no ``kernel`` (BatchNorm's bias and
    scale), trained at ``bias_lr_scale`` times the rate; ``frozen``: the
    whitening kernel when it comes from data (``whiten_examples > 0``);
    ``whiten_bias``: the whitening bias when ``whiten_bias_epochs`` is set;
    ``other``: the rest.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [
        tuple(getattr(k, "key", getattr(k, "name", k)) for k in path)
        for path, _ in leaves
    ]
    names = [n[:-1] if n and n[-1] == "value" else n for n in names]
    has_kernel = {n[:-1] for n in names if n[-1] == "kernel"}

    def group(name: tuple) -> str:
        module, leaf = name[:-1], name[-1]
        if module and module[-1] == "whiten" and len(module) == 1:
            if leaf == "kernel" and config.whiten_examples > 0:
                return "frozen"
            if leaf == "bias" and config.whiten_bias_epochs is not None:
                return "whiten_bias"
        return "other" if module in has_kernel else "norm"

    return jax.tree_util.tree_unflatten(treedef, [group(n) for n in names])


def _grouped(config: TrainConfig) -> bool:
    return (
        config.bias_lr_scale != 1.0
        or config.whiten_examples > 0
        or config.whiten_bias_epochs is not None
    )


def make_optimizer(
    config: TrainConfig, steps_per_epoch: int
) -> optax.GradientTransformation:
    """SGD with Nesterov momentum, weight decay and the configured schedule.

    With the recipe's options: parameter groups (:func:`param_groups`) and the
    lookahead average of the weights (``ema_start_epoch``).
    """
    _check_config(config)
    _checks.positive_int(steps_per_epoch, "steps_per_epoch")
    total = max(1, config.epochs * steps_per_epoch)
    schedule = _schedule(config, total, steps_per_epoch)

    def sgd(rate, decay: float) -> optax.GradientTransformation:
        return optax.chain(
            optax.add_decayed_weights(decay),
            optax.sgd(rate, momentum=config.momentum, nesterov=True),
        )

    tx = sgd(schedule, config.weight_decay)
    if _grouped(config):
        scale = config.bias_lr_scale
        bias_steps = (config.whiten_bias_epochs or 0) * steps_per_epoch
        tx = optax.multi_transform(
            {
                "other": tx,
                "norm": sgd(lambda t: scale * schedule(t), config.weight_decay / scale),
                "frozen": optax.set_to_zero(),
                "whiten_bias": sgd(
                    lambda t: jnp.where(t < bias_steps, schedule(t), 0.0),
                    config.weight_decay,
                ),
            },
            functools.partial(param_groups, config),
        )
    if config.ema_start_epoch is not None:
        tx = lookahead_average(
            tx,
            start_step=config.ema_start_epoch * steps_per_epoch,
            every=config.ema_every,
            decay=config.ema_decay,
            power=config.ema_power,
            total_steps=total,
        )
    return tx


class LookaheadState(NamedTuple):
    inner: Any
    average: Any
    count: jax.Array


def lookahead_average(
    inner: optax.GradientTransformation,
    *,
    start_step: int,
    every: int,
    decay: float,
    power: float,
    total_steps: int,
) -> optax.GradientTransformation:
    """Wraps ``inner`` so the weights are pulled to their running average.

    After ``inner``'s step ``t`` (counted from 1): before ``start_step`` the
    average follows the weights; from then on, every ``every`` steps and at the
    last step, ``average = rho * average + (1 - rho) * weights`` with ``rho =
    decay ** every * (t / total_steps) ** power``, and the weights become the
    average (lookahead). Between those steps the weights move freely. A
    weight that ``inner`` leaves alone stays exactly as it is.
    """

    def init(params):
        return LookaheadState(
            inner.init(params),
            jax.tree.map(lambda x: jnp.array(x, copy=True), params),
            jnp.int32(0),
        )

    def update(updates, state, params):
        inner_updates, inner_state = inner.update(updates, state.inner, params)
        fast = optax.apply_updates(params, inner_updates)
        count = state.count + 1
        active = count >= start_step
        due = active & ((count % every == 0) | (count >= total_steps))
        rho = decay**every * (count / total_steps) ** power
        blended = jax.tree.map(
            lambda a, w: a + (1 - rho) * (w - a), state.average, fast
        )
        average = jax.tree.map(
            lambda b, a, w: jnp.where(due, b, jnp.where(active, a, w)),
            blended, state.average, fast,
        )
        new = jax.tree.map(lambda a, w: jnp.where(due, a, w), average, fast)
        out = jax.tree.map(lambda n, p: n - p, new, params)
        return out, LookaheadState(inner_state, average, count)

    return optax.GradientTransformation(init, update)
