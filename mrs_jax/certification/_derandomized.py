"""(De)randomized smoothing (Levine & Feizi, 2020): column and block smoothing.

The base classifier sees the image ablated to one band of ``b`` columns (or one
``b x b`` block), every band position in turn; the prediction is the class with
most votes. A patch of width ``m`` meets at most ``delta = m + b - 1`` column
positions (``delta ** 2`` blocks), so it moves at most that many votes: the
label is certified for every patch position and content when its lead over
every other class exceeds ``2 * delta`` (ties to the smaller class index).
Deterministic: no sampling, no alpha. ``MRS_SPEC.md`` section 10; derivation
``docs/derandomized_smoothing.md``.

Ablated pixels are encoded apart from every colour (``mrs_jax.training.encode``:
channels ``(x, 1 - x)`` where kept, ``(0, 0)`` where ablated), the same encoding
the base classifier is trained on (``augmentation="ablation"``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mrs_jax.certification._counting import as_pytree
from mrs_jax.core import checks as _checks
from mrs_jax.training import (
    ABLATIONS as ABLATIONS,
    ablate as ablate,
    band_mask as band_mask,
    encode as encode,
    num_positions as num_positions,
)


class DerandomizedResult(NamedTuple):
    """The vote and certificate of one image (host values).

    Attributes:
      label: the class with most votes (ties to the smaller index).
      votes: ``[K]`` votes per class.
      margin: the label's votes minus the runner-up's.
      certified: certified for every patch of the given size.
    """

    label: int
    votes: np.ndarray
    margin: int
    certified: bool


def votes(
    classify, x: jax.Array, band: int, *, mode: str = "column", theta: float = 0.0,
    chunk: int | None = None,
) -> jax.Array:
    """``[K]`` int32 votes of every band position for one image (device function).

    A position votes for the arg max of ``classify``'s logits on its ablation,
    and only if that class's softmax exceeds ``theta`` (``theta = 0``: always).

    Args:
      classify: ``[N, H, W, 2C] -> [N, K]`` logits.
      x: ``[H, W, C]`` in [0, 1].
      band: the band width ``b`` (or block side).
      mode: ``column`` or ``block``.
      theta: softmax threshold in [0, 1).
      chunk: positions classified per call (None: all at once).
    """
    _check_settings(x.shape, band, mode, theta)
    count = num_positions(x.shape[:2], mode)
    chunk = count if chunk is None else min(int(chunk), count)
    padded = -(-count // chunk) * chunk
    positions = jnp.arange(padded).reshape(-1, chunk)

    def one_chunk(part):
        images = jax.vmap(lambda p: ablate(x, p, band, mode))(part)
        logits = classify(images)
        probs = jax.nn.softmax(logits, axis=-1)
        label = jnp.argmax(logits, axis=-1)
        counted = (jnp.max(probs, axis=-1) > theta) & (part < count)
        counted &= jnp.all(jnp.isfinite(logits), axis=-1)
        return jax.nn.one_hot(label, logits.shape[-1], dtype=jnp.int32) * counted[
            :, None
        ].astype(jnp.int32)

    return jax.lax.map(one_chunk, positions).sum(axis=(0, 1))


def delta(patch_size: int, band: int, mode: str) -> int:
    """How many votes a ``patch_size`` patch can change: ``m + b - 1`` bands,
    or its square for blocks."""
    reach = patch_size + band - 1
    return reach if mode == "column" else reach * reach


def certify_votes(counts: jax.Array, changed: int) -> tuple[jax.Array, jax.Array]:
    """``(label, certified)`` from ``[K]`` votes, when at most ``changed`` votes
    can move (device function).

    The label is the first class with most votes. It is certified when, for
    every other class ``c'``, its votes exceed ``c'``'s by ``2 * changed`` or
    more (``c < c'``), or by more than that (``c' < c``: ``c'`` wins ties).
    """
    label = jnp.argmax(counts)
    others = jnp.arange(counts.shape[0]) != label
    need = 2 * changed + (jnp.arange(counts.shape[0]) < label).astype(counts.dtype)
    certified = jnp.all(~others | (counts[label] - counts >= need))
    return label, certified


def _check_settings(shape, band, mode, theta) -> None:
    if len(shape) != 3:
        raise ValueError(f"x must be one image [H, W, C]; got shape {tuple(shape)}")
    _checks.one_of(mode, ABLATIONS, "mode")
    band = _checks.positive_int(band, "band")
    limit = shape[1] if mode == "column" else min(shape[:2])
    if band > limit:
        raise ValueError(f"band={band} exceeds the image's {limit} pixels")
    if not isinstance(theta, (int, float)) or not 0 <= theta < 1:
        raise ValueError(f"theta must be a number in [0, 1); got {theta!r}")


@functools.partial(jax.jit, static_argnames=("band", "mode", "theta", "chunk"))
def _batch_votes(classify, xs, band, mode, theta, chunk):
    return jax.vmap(
        lambda x: votes(classify, x, band, mode=mode, theta=theta, chunk=chunk)
    )(xs)


def derandomized_smoothing(
    classify,
    x: Any,
    patch_size: int,
    band: int,
    *,
    mode: str = "column",
    theta: float = 0.0,
    chunk: int | None = None,
) -> DerandomizedResult | list[DerandomizedResult]:
    """Predicts and certifies one image ``[H, W, C]`` or a batch (host driver).

    One device program votes every band position of every image; the
    certificate holds for every ``patch_size x patch_size`` patch, any position
    and any content, deterministically.

    Args:
      classify: ``[N, H, W, 2C] -> [N, K]`` logits on encoded ablations.
      x: ``[H, W, C]`` or ``[B, H, W, C]`` in [0, 1].
      patch_size: the side ``m`` of the patches certified against.
      band: band width (column) or block side ``b``.
      mode: ``column`` or ``block``.
      theta: softmax threshold of a vote.
      chunk: positions classified per call (None: all).

    Returns:
      A :class:`DerandomizedResult`, or a list of them for a batch.

    Raises:
      ValueError: bad settings or images; non-finite logits (no vote).
    """
    _checks.callable_(classify, "classify")
    xs, single = _checks.image_or_batch(x)
    _check_settings(xs.shape[1:], band, mode, theta)
    patch_size = _checks.positive_int(patch_size, "patch_size")
    if chunk is not None:
        chunk = _checks.positive_int(chunk, "chunk")
    counts = np.asarray(
        _batch_votes(
            as_pytree(classify), jnp.asarray(xs), band, mode, float(theta), chunk
        )
    )
    positions = num_positions(xs.shape[1:3], mode)
    if theta == 0 and np.any(counts.sum(axis=1) < positions):
        raise ValueError(
            "classify returned non-finite logits (NaN or inf) for an ablated "
            "image; no vote can be taken from them"
        )
    changed = delta(patch_size, band, mode)
    results = []
    for row in counts:
        label, certified = certify_votes(jnp.asarray(row), changed)
        ordered = np.sort(row)
        results.append(
            DerandomizedResult(
                int(label), row, int(ordered[-1] - ordered[-2]), bool(certified)
            )
        )
    return results[0] if single else results
