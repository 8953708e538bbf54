"""Turn a trained NNX model into a pure, jittable ``classify(images) -> logits``."""

import functools
from collections.abc import Callable

import jax
from flax import nnx
from jax.tree_util import Partial


def _apply(graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array) -> jax.Array:
    model = nnx.merge(graphdef, state)
    return model(images)


@functools.lru_cache(maxsize=64)
def _apply_for(graphdef: nnx.GraphDef) -> Callable:
    # One function object per architecture: classifiers of equal structure then have
    # equal pytree structure, so a jitted caller traces once for all their weights.
    return functools.partial(_apply, graphdef)


def classifier_from_split(graphdef: nnx.GraphDef, state: nnx.State) -> Partial:
    """``classify(images) -> logits`` of the model ``nnx.merge(graphdef, state)``,
    as a ``Partial`` whose leaves are ``state`` (the weights cross jit as
    arguments; classifiers of one architecture share one compiled program)."""
    return Partial(_apply_for(graphdef), state)


def _features(graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array):
    return nnx.merge(graphdef, state).features(images)


def _head(graphdef: nnx.GraphDef, state: nnx.State, features: jax.Array):
    model = nnx.merge(graphdef, state)
    if hasattr(model, "logits_from_features"):  # a pooling other than the mean
        return model.logits_from_features(features)
    return model.head(features.mean(axis=(1, 2)))


def features_and_head(model: nnx.Module) -> tuple[Partial, Partial]:
    """Splits a model as ``logits = head_fn(features_fn(images))`` for Grad-CAM.

    ``features_fn(images [B, H, W, C]) -> [B, h, w, F]`` is the last feature map
    and ``head_fn`` global-average-pools it and applies the linear head, in eval
    mode, so ``head_fn(features_fn(x))`` equals ``as_classifier(model)(x)``.

    Raises:
        TypeError: the model has no ``features`` method and ``head`` layer.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be an nnx.Module; got {type(model).__name__}")
    if not (hasattr(model, "features") and hasattr(model, "head")):
        raise TypeError(f"{type(model).__name__} has no features()/head split")
    eval_model = nnx.view(model, use_running_average=True)
    graphdef, state = nnx.split(eval_model)
    state = jax.tree.map(lambda a: a, state)
    return (
        Partial(functools.partial(_features, graphdef), state),
        Partial(functools.partial(_head, graphdef), state),
    )


def as_classifier(model: nnx.Module) -> Callable[[jax.Array], jax.Array]:
    """Returns ``classify(images: [B, H, W, C] in [0, 1]) -> logits [B, K]``.

    The model runs in eval mode (BatchNorm uses its running statistics, dropout is
    off). The result is a ``jax.tree_util.Partial`` whose leaves are the model's state
    arrays, so passing it into a ``jax.jit``-ed function makes the weights traced
    arguments rather than constants baked into the compiled program. Later changes to
    ``model`` do not affect the returned classifier.

    Args:
        model: an ``nnx.Module`` mapping images to logits.

    Returns:
        A pytree callable ``classify``.

    Raises:
        TypeError: if ``model`` is not an ``nnx.Module``.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be an nnx.Module; got {type(model).__name__}")
    eval_model = nnx.view(model, use_running_average=True)
    graphdef, state = nnx.split(eval_model)
    # Copy the arrays' containers so the classifier is a snapshot of the weights.
    state = jax.tree.map(lambda a: a, state)
    return classifier_from_split(graphdef, state)
