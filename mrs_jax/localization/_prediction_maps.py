"""Prediction maps: classify the image with every s x s block inpainted.

Step 1 of joint voting: for each block position, in row-major order, inpaint the
block and record the base classifier's label. With ``"harmonic"`` the fill and
the classification are one device program (:func:`harmonic_maps`, chunked over
(image, position) pairs so memory does not grow with the batch); with
``"telea"`` OpenCV fills on host threads while the device classifies
(:func:`telea_maps`). The voting lives in ``_localize`` (``docs/localization.md``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import mrs_jax.localization._inpaint as inpaint
from mrs_jax.core import checks as _checks


def _as_partial(classify):
    if isinstance(classify, jax.tree_util.Partial):
        return classify
    if not callable(classify):
        raise TypeError(f"classify must be callable, got {type(classify).__name__}")
    return jax.tree_util.Partial(classify)


def predicted_labels(classify, images: jax.Array) -> jax.Array:
    """[B] int32 argmax labels of classify(images), checking the logits' shape.

    A row of logits that is not all finite has no label: it gets -1, which
    host drivers refuse (:func:`refuse_non_finite`).
    """
    logits = classify(images)
    if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
        raise ValueError(
            f"classify must return logits [B, K] for B={images.shape[0]} images, "
            f"got shape {logits.shape}"
        )
    finite = jnp.all(jnp.isfinite(logits), axis=-1)
    return jnp.where(finite, jnp.argmax(logits, axis=-1), -1).astype(jnp.int32)


def refuse_non_finite(labels, what: str):
    """Host check: ``labels`` from :func:`predicted_labels` hold no -1.

    Returns ``labels``; under tracing, unchecked (the caller's host driver
    checks what comes back).

    Raises:
      ValueError: ``classify`` returned non-finite logits for some image.
    """
    if isinstance(labels, jax.core.Tracer):
        return labels
    if np.any(np.asarray(labels) < 0):
        raise ValueError(
            f"classify returned non-finite logits (NaN or inf) for {what}; no "
            "label can be taken from them"
        )
    return labels


# ----------------------------------------------------------------------- chunks


def chunked_positions(positions: np.ndarray, batch_size: int) -> np.ndarray:
    """[n_chunks, batch, 2] positions, padded with copies of the first."""
    n_chunks = -(-len(positions) // batch_size)
    padded = np.concatenate(
        [positions, np.repeat(positions[:1], n_chunks * batch_size - len(positions), 0)]
    )
    return padded.reshape(n_chunks, batch_size, 2)


def pair_chunks(num_images: int, positions: np.ndarray, batch_size: int) -> np.ndarray:
    """[n_chunks, batch, 3] int32 (image, i, j) pairs, image-major, padded with
    the first pair (its labels are dropped)."""
    image = np.repeat(np.arange(num_images, dtype=np.int32), len(positions))
    pairs = np.concatenate([image[:, None], np.tile(positions, (num_images, 1))], 1)
    n_chunks = -(-len(pairs) // batch_size)
    pad = np.repeat(pairs[:1], n_chunks * batch_size - len(pairs), 0)
    return np.concatenate([pairs, pad]).astype(np.int32).reshape(n_chunks, -1, 3)


def harmonic_batch_size(batch_size: int, total: int, mesh) -> int:
    """Pairs per chunk: at most ``total``, rounded up to a multiple of the mesh's
    device count so that every chunk shards evenly."""
    batch_size = min(batch_size, total)
    if mesh is not None:
        devices = _checks.mesh_with_axis(mesh).devices.size
        batch_size = -(-batch_size // devices) * devices
    return batch_size


def place_pairs(classify, xs, chunks, mesh):
    """Shards each chunk's pairs over ``mesh`` (weights and images replicated).

    Concrete inputs are placed with ``jax.device_put``; traced ones (inside a
    caller's jit) get sharding constraints instead. Without a mesh the inputs are
    returned as jax arrays.

    Returns:
      (classify, xs, chunks) ready for :func:`harmonic_maps`.
    """
    if mesh is None:
        return classify, jnp.asarray(xs), jnp.asarray(chunks)
    _checks.mesh_with_axis(mesh)
    # Explicit-axis meshes (jax.make_mesh's default) would demand out_sharding on
    # every gather in the fill; GSPMD propagation (Auto axes) needs none.
    auto = (jax.sharding.AxisType.Auto,) * len(mesh.axis_names)
    mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=auto)
    by_pair = jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(None, mesh.axis_names)
    )
    if any(_checks.is_traced(leaf) for leaf in jax.tree.leaves((classify, xs))):
        chunks = jax.lax.with_sharding_constraint(jnp.asarray(chunks), by_pair)
        return classify, xs, chunks
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    classify, xs = jax.device_put((classify, jnp.asarray(xs)), replicated)
    return classify, xs, jax.device_put(chunks, by_pair)


# ------------------------------------------------------------------ harmonic


def harmonic_maps(classify, xs, chunks, size, grid):
    """On-device prediction maps of B images: harmonic fill + classify by chunks.

    Device function, pure and with no jit of its own, so a caller can fuse it
    into a larger program (``localize`` votes in the same program). It checks
    nothing but the logits' shape (at trace time); :func:`prediction_map` and
    ``localize`` check their inputs before calling it.

    Args:
      classify: ``[N, H, W, C] -> [N, K]`` logits (a ``Partial`` under jit).
      xs: [B, H, W, C] float32 images.
      chunks: [n_chunks, batch, 3] int32 (image, i, j) pairs from
        :func:`pair_chunks` (every image's positions, image-major).
      size: block side s (static).
      grid: (rows, cols) of each map (static).

    Returns:
      [B, rows, cols] int32 labels.
    """

    def one_chunk(pairs):
        variants = jax.vmap(
            lambda pair: inpaint.harmonic_variant(xs[pair[0]], pair[1:], size)
        )(pairs)
        return predicted_labels(classify, variants)

    count, positions = xs.shape[0], grid[0] * grid[1]
    labels = jax.lax.map(one_chunk, chunks).reshape(-1)[: count * positions]
    return labels.reshape(count, *grid)


_harmonic_maps_jit = jax.jit(harmonic_maps, static_argnames=("size", "grid"))


# ------------------------------------------------------------------- Telea


@jax.jit
def _classify_pairs(classify, bases, blocks, pairs):
    """Labels of ``bases[image]`` with each [s, s, C] block pasted at (i, j)."""
    images = jax.vmap(
        lambda block, pair: inpaint.paste_block(bases[pair[0]], block, pair[1:])
    )(blocks, pairs)
    return predicted_labels(classify, images)


def telea_maps(classify, xs, positions, size, batch_size, grid, workers):
    """Host Telea fill on threads, overlapped with async device classification.

    Host step (OpenCV). Images are filled one after another, one chunk of
    blocks ahead of the device; the filled blocks of consecutive images share
    classify calls of exactly ``batch_size`` variants (the last is padded), so
    the jitted classify compiles once.

    Args:
      classify: ``[N, H, W, C] -> [N, K]`` logits.
      xs: [B, H, W, C] float32 numpy images in [0, 1] (Telea runs on their
        uint8 rounding).
      positions: [P, 2] int block positions in row-major order.
      size: block side s.
      batch_size: variants per device call.
      grid: (rows, cols) with rows * cols == P.
      workers: Telea threads (None: os.cpu_count()).

    Returns:
      [B, rows, cols] int32 labels.
    """
    uint8 = [inpaint.to_uint8(x) for x in xs]
    bases = jnp.asarray(np.stack(uint8).astype(np.float32) / np.float32(255.0))
    pending = []

    def dispatch(blocks, pairs):
        n = len(pairs)
        if n < batch_size:  # pad so the jitted classify never retraces
            blocks = np.concatenate([blocks, np.repeat(blocks[:1], batch_size - n, 0)])
            pairs = np.concatenate([pairs, np.repeat(pairs[:1], batch_size - n, 0)])
        # Dispatch is asynchronous: the threads fill the next chunk meanwhile.
        pending.append(_classify_pairs(classify, bases, blocks, pairs)[:n])

    held_blocks = np.zeros((0, size, size, xs.shape[-1]), np.float32)
    held_pairs = np.zeros((0, 3), np.int32)
    for b, x_uint8 in enumerate(uint8):
        chunks = inpaint.telea_block_chunks(
            x_uint8, positions, size, batch_size, workers
        )
        for start, filled in zip(
            range(0, len(positions), batch_size), chunks, strict=True
        ):
            part = positions[start : start + batch_size]
            image = np.full((len(part), 1), b, np.int32)
            held_blocks = np.concatenate([held_blocks, filled])
            held_pairs = np.concatenate([held_pairs, np.concatenate([image, part], 1)])
            while len(held_pairs) >= batch_size:  # a full call: dispatch it (async)
                dispatch(held_blocks[:batch_size], held_pairs[:batch_size])
                held_blocks = held_blocks[batch_size:]
                held_pairs = held_pairs[batch_size:]
    if len(held_pairs):
        dispatch(held_blocks, held_pairs)
    return jnp.concatenate(pending).reshape(len(xs), *grid)


# ---------------------------------------------------------------- settings


def check_map_settings(classify, image_shape, size, stride, method, batch_size):
    """Validates the static prediction-map settings against one image's shape
    ``[H, W, C]`` (trace-time checks: nothing reads pixel values).

    Returns:
      ``(classify as a Partial, size, stride, method, batch_size)``.
    """
    classify = _as_partial(classify)
    size, stride = inpaint.check_block(image_shape, size, stride)
    method = inpaint.check_method(method)
    batch_size = inpaint.check_int(batch_size, "batch_size", 1)
    if method == "telea" and image_shape[-1] not in (1, 3):
        raise ValueError(
            f"method='telea' needs x with 1 or 3 channels, got {image_shape[-1]}"
        )
    return classify, size, stride, method, batch_size


def _checked_image(x, method):
    """x [H, W, C] as float32: values checked too when x is concrete."""
    if not _checks.is_traced(x):
        return inpaint.check_image(x)
    if method == "telea":
        raise TypeError(
            "x must be a concrete array for method='telea' (OpenCV runs on the "
            "host); use method='harmonic' under jax.jit or jax.vmap"
        )
    return _checks.traced_image(x)


# ------------------------------------------------------------------ public


def prediction_map(
    classify,
    x,
    size,
    *,
    stride=1,
    method="telea",
    batch_size=256,
    workers=None,
    mesh=None,
) -> jax.Array:
    """Labels of all block-inpainted variants of x (spec section 4, step 1).

    With ``method="harmonic"`` this is a device function: it works under
    ``jax.jit`` and ``jax.vmap`` (e.g. over a batch of images) and inside a
    caller's jitted code. Shapes, dtypes and the static settings are checked at
    trace time; pixel values (finite, in [0, 1]) only when ``x`` is concrete.
    With ``method="telea"`` it is a host step (OpenCV) and ``x`` must be
    concrete. For many images on the host, ``localize`` takes a batch.

    Args:
      classify: pure function [N, H, W, C] -> logits [N, K]; a plain function or a
        ``jax.tree_util.Partial`` carrying weights (passed to jit as a pytree).
      x: [H, W, C] float image in [0, 1] (computed in float32).
      size: block side s, 1 <= s <= min(H, W) (static).
      stride: pixel step between block positions, >= 1 (static).
      method: "telea" (OpenCV on host threads, on the uint8-rounded image; chunks of
        blocks are filled while the device classifies the previous chunk) or
        "harmonic" (fill, classify and argmax in one device program).
      batch_size: variants per device call (memory bound: batch_size x H x W x C).
      workers: Telea threads; default os.cpu_count().
      mesh: optional ``jax.sharding.Mesh`` for method="harmonic": each chunk of
        positions is sharded over all its devices (batch_size rounded up to a
        multiple of the device count); labels do not depend on it.

    Returns:
      [rows, cols] int32 labels, rows = (H - s) // stride + 1 (likewise cols); entry
      (r, c) is the block at pixel (r * stride, c * stride).

    Raises:
      TypeError, ValueError: naming the argument, for a wrong type, rank, dtype
        or setting (at trace time), or pixel values outside [0, 1] (concrete x).
    """
    method = inpaint.check_method(method)
    arr = _checked_image(x, method)
    classify, size, stride, method, batch_size = check_map_settings(
        classify, arr.shape, size, stride, method, batch_size
    )
    height, width = arr.shape[:2]
    grid = inpaint.grid_shape(height, width, size, stride)
    positions = inpaint.block_positions(height, width, size, stride)
    if method == "telea":
        batch_size = min(batch_size, len(positions))
        maps = telea_maps(
            classify, arr[None], positions, size, batch_size, grid, workers
        )
        return refuse_non_finite(maps, "an inpainted image")[0]
    batch_size = harmonic_batch_size(batch_size, len(positions), mesh)
    chunks = pair_chunks(1, positions, batch_size)
    placed = place_pairs(classify, arr[None], chunks, mesh)
    return refuse_non_finite(
        _harmonic_maps_jit(*placed, size, grid)[0], "an inpainted image"
    )
