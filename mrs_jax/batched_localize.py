"""Localisation by joint voting for a batch of images (issue 11, section 3).

:func:`localize_batch` gives, for each of B images, what ``mrs_jax.localize``
gives for that image alone, with fewer and fuller device programs:

- ``method="harmonic"``: one jitted program for the whole batch. The B x P
  (image, block position) pairs are laid end to end and cut into chunks of
  ``batch_size`` pairs (``lax.map``), each chunk's pairs sharded over the
  mesh; every pair is the image with that block harmonically filled, exactly
  as per image. Joint voting and the masks are ``vmap``-ed over images in the
  same program.
- ``method="telea"``: OpenCV fills every block of every image on host threads
  (image after image, one chunk ahead), and the filled blocks of consecutive
  images share classify calls of ``batch_size`` variants; voting is one
  ``vmap``-ed program.

The labels of each variant, hence the prediction maps, votes and masks, are
those of ``localize`` on each image (up to the classifier's own float
behaviour across batch shapes; tests check equality).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mrs_jax import _checks, inpaint
from mrs_jax.localize import (
    LocalizeResult,
    block_mask,
    localize_result,
    vote_settings,
    vote_with_settings,
)
from mrs_jax.prediction_maps import check_map_args, predicted_labels


def _pair_chunks(num_images: int, positions: np.ndarray, batch_size: int):
    """[n_chunks, batch, 3] (image, i, j) pairs, image-major, padded with the
    first pair (its labels are dropped)."""
    image = np.repeat(np.arange(num_images, dtype=np.int32), len(positions))
    pairs = np.concatenate([image[:, None], np.tile(positions, (num_images, 1))], 1)
    n_chunks = -(-len(pairs) // batch_size)
    pad = np.repeat(pairs[:1], n_chunks * batch_size - len(pairs), 0)
    return np.concatenate([pairs, pad]).reshape(n_chunks, batch_size, 3)


def _place(classify, xs, chunks, mesh):
    """Shards each chunk's pairs over ``mesh`` (weights and images replicated),
    as ``prediction_maps.place_positions`` does for one image."""
    if mesh is None:
        return classify, jnp.asarray(xs), jnp.asarray(chunks)
    _checks.mesh_with_axis(mesh)
    # Auto axes: GSPMD propagates the sharding through the fill's gathers.
    auto = (jax.sharding.AxisType.Auto,) * len(mesh.axis_names)
    mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=auto)
    spec = jax.sharding.PartitionSpec(None, mesh.axis_names)
    chunks = jax.device_put(chunks, jax.sharding.NamedSharding(mesh, spec))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    classify, xs = jax.device_put((classify, jnp.asarray(xs)), replicated)
    return classify, xs, chunks


def _vote_all(pmaps, tau, settings, dilation, shape):
    """vmap of ``localize``'s vote and mask over the images' prediction maps."""

    def one(pmap):
        vote = vote_with_settings(pmap, tau, settings)
        return block_mask(vote.top_left, settings.size, dilation, *shape), vote

    return jax.vmap(one)(pmaps)


@functools.partial(jax.jit, static_argnames=("settings", "dilation", "grid"))
def _localize_harmonic_batch(classify, xs, chunks, tau, settings, dilation, grid):
    def one_chunk(pairs):
        variants = jax.vmap(
            lambda pair: inpaint.harmonic_variant(xs[pair[0]], pair[1:], settings.size)
        )(pairs)
        return predicted_labels(classify, variants)

    count, positions = xs.shape[0], grid[0] * grid[1]
    labels = jax.lax.map(one_chunk, chunks).reshape(-1)[: count * positions]
    pmaps = labels.reshape(count, *grid)
    masks, votes = _vote_all(pmaps, tau, settings, dilation, xs.shape[1:3])
    return masks, pmaps, votes


_vote_all_jit = jax.jit(_vote_all, static_argnames=("settings", "dilation", "shape"))


@jax.jit
def _classify_pairs(classify, bases, blocks, pairs):
    """Labels of ``bases[image]`` with each block pasted at its position."""
    images = jax.vmap(
        lambda block, pair: inpaint.paste_block(bases[pair[0]], block, pair[1:])
    )(blocks, pairs)
    return predicted_labels(classify, images)


def _telea_maps(classify, xs, positions, size, batch_size, grid, workers):
    """[B, rows, cols] labels: host Telea per image, classify calls shared."""
    uint8 = [inpaint.to_uint8(x) for x in xs]
    bases = jnp.asarray(np.stack(uint8).astype(np.float32) / np.float32(255.0))
    pending, blocks, pairs = [], [], []

    def dispatch(blocks, pairs):
        n = len(pairs)
        if n < batch_size:  # pad so the jitted classify never retraces
            blocks = np.concatenate([blocks, np.repeat(blocks[:1], batch_size - n, 0)])
            pairs = np.concatenate([pairs, np.repeat(pairs[:1], batch_size - n, 0)])
        pending.append(_classify_pairs(classify, bases, blocks, pairs)[:n])

    for b, x_uint8 in enumerate(uint8):
        chunks = inpaint.telea_block_chunks(
            x_uint8, positions, size, batch_size, workers
        )
        for start, filled in zip(
            range(0, len(positions), batch_size), chunks, strict=True
        ):
            part = positions[start : start + batch_size]
            blocks.append(filled)
            pairs.append(
                np.concatenate([np.full((len(part), 1), b, np.int32), part], 1)
            )
            ready, held = np.concatenate(blocks), np.concatenate(pairs)
            while len(held) >= batch_size:  # a full call: dispatch it (async)
                dispatch(ready[:batch_size], held[:batch_size])
                ready, held = ready[batch_size:], held[batch_size:]
            blocks, pairs = [ready], [held]
    if len(pairs[0]):
        dispatch(blocks[0], pairs[0])
    return jnp.concatenate(pending).reshape(len(xs), *grid)


def localize_batch(
    classify,
    images,
    size,
    *,
    stride=1,
    m=None,
    tau=None,
    dilation=3,
    method="telea",
    batch_size=256,
    workers=None,
    mesh=None,
) -> LocalizeResult:
    """``mrs_jax.localize`` for B images at once (module docstring).

    Args:
      classify, size, stride, m, tau, dilation, method, workers: as in
        :func:`mrs_jax.localize`.
      images: ``[B, H, W, C]`` float32 in [0, 1].
      batch_size: inpainted variants per classify call, over all images.
      mesh: optional ``jax.sharding.Mesh`` sharding each chunk of (image,
        position) pairs for ``"harmonic"``.

    Returns:
      A ``LocalizeResult`` whose every field has a leading axis B (its
      ``reason_name`` does not apply; :func:`split_results` gives one result
      per image, equal to ``localize`` on that image).
    """
    xs = _checks.image_batch(images)
    classify, _, size, stride, method, batch_size = check_map_args(
        classify, xs[0], size, stride, method, batch_size
    )
    settings, tau = vote_settings(size, stride=stride, m=m, tau=tau)
    dilation = inpaint.check_int(dilation, "dilation", 0)
    height, width = xs.shape[1:3]
    grid = inpaint.grid_shape(height, width, size, stride)
    positions = inpaint.block_positions(height, width, size, stride)
    batch_size = min(batch_size, len(xs) * len(positions))
    if method == "harmonic":
        if mesh is not None:  # each chunk divisible by the mesh
            devices = _checks.mesh_with_axis(mesh).devices.size
            batch_size = -(-batch_size // devices) * devices
        chunks = _pair_chunks(len(xs), positions, batch_size)
        placed = _place(classify, xs, chunks, mesh)
        masks, pmaps, votes = _localize_harmonic_batch(
            *placed, tau, settings, dilation, grid
        )
    else:
        pmaps = _telea_maps(classify, xs, positions, size, batch_size, grid, workers)
        masks, votes = _vote_all_jit(pmaps, tau, settings, dilation, (height, width))
    return localize_result(masks, pmaps, votes)


def split_results(batched: LocalizeResult) -> list[LocalizeResult]:
    """One ``LocalizeResult`` per image (numpy fields), from one device transfer."""
    host = jax.device_get(batched)
    return [
        LocalizeResult(*(field[b] for field in host)) for b in range(len(host.mask))
    ]
