"""Prediction maps: classify the image with every s x s block inpainted.

Step 1 of joint voting (``MRS_SPEC.md`` section 4): for each block position, in
row-major order, inpaint the block (Telea on host threads overlapped with device
classification, or the on-device harmonic fill under one jit, optionally with the
positions sharded over a mesh) and record the base classifier's label. The
voting itself lives in ``mrs_jax.localize``, which builds on the public steps
here: :func:`check_map_args`, :func:`place_positions`, :func:`harmonic_map` (pure,
for use inside a caller's jit) and :func:`telea_map`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mrs_jax import inpaint


def _as_partial(classify):
    if isinstance(classify, jax.tree_util.Partial):
        return classify
    if not callable(classify):
        raise TypeError(f"classify must be callable, got {type(classify).__name__}")
    return jax.tree_util.Partial(classify)


def predicted_labels(classify, images: jax.Array) -> jax.Array:
    """[B] int32 argmax labels of classify(images), checking the logits' shape."""
    logits = classify(images)
    if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
        raise ValueError(
            f"classify must return logits [B, K] for B={images.shape[0]} images, "
            f"got shape {logits.shape}"
        )
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


@jax.jit
def _classify_blocks(classify, base, blocks, positions):
    """Labels of ``base`` with each [s, s, C] block pasted at its position."""
    images = jax.vmap(inpaint.paste_block, in_axes=(None, 0, 0))(
        base, blocks, positions
    )
    return predicted_labels(classify, images)


def chunked_positions(positions: np.ndarray, batch_size: int) -> np.ndarray:
    """[n_chunks, batch, 2] positions, padded with copies of the first."""
    n_chunks = -(-len(positions) // batch_size)
    padded = np.concatenate(
        [positions, np.repeat(positions[:1], n_chunks * batch_size - len(positions), 0)]
    )
    return padded.reshape(n_chunks, batch_size, 2)


def harmonic_map(classify, x, chunks, size, grid):
    """On-device prediction map: harmonic fill + classify, chunk by chunk.

    Pure (no jit of its own), so a caller can fuse it into a larger program.

    Args:
      classify: ``[B, H, W, C] -> [B, K]`` logits (a ``Partial`` under jit).
      x: [H, W, C] float32 image in [0, 1].
      chunks: [n_chunks, batch, 2] int block positions (``place_positions``).
      size: block side s (static).
      grid: (rows, cols) of the map (static).

    Returns:
      [rows, cols] int32 labels.
    """

    def one_chunk(positions):
        images = jax.vmap(inpaint.harmonic_variant, in_axes=(None, 0, None))(
            x, positions, size
        )
        return predicted_labels(classify, images)

    labels = jax.lax.map(one_chunk, chunks).reshape(-1)
    return labels[: grid[0] * grid[1]].reshape(grid)


_harmonic_map_jit = jax.jit(harmonic_map, static_argnames=("size", "grid"))


def telea_map(classify, x, positions, size, batch_size, grid, workers):
    """Host Telea fill on threads, overlapped with async device classification.

    Args:
      classify: ``[B, H, W, C] -> [B, K]`` logits.
      x: [H, W, C] float32 image in [0, 1] (Telea runs on its uint8 rounding).
      positions: [P, 2] int block positions in row-major order.
      size: block side s.
      batch_size: variants per device call (the last chunk is padded).
      grid: (rows, cols) with rows * cols == P.
      workers: Telea threads (None: os.cpu_count()).

    Returns:
      [rows, cols] int32 labels.
    """
    x_uint8 = inpaint.to_uint8(x)
    base = jnp.asarray(x_uint8.astype(np.float32) / np.float32(255.0))
    pending = []
    chunks = inpaint.telea_block_chunks(x_uint8, positions, size, batch_size, workers)
    for start, blocks in zip(range(0, len(positions), batch_size), chunks, strict=True):
        part = positions[start : start + batch_size]
        n = len(part)
        if n < batch_size:  # pad the last chunk so the jitted classify never retraces
            blocks = np.concatenate([blocks, np.repeat(blocks[:1], batch_size - n, 0)])
            part = np.concatenate([part, np.repeat(part[:1], batch_size - n, 0)])
        # Dispatch is asynchronous: the threads fill the next chunk meanwhile.
        pending.append(_classify_blocks(classify, base, blocks, part)[:n])
    return jnp.concatenate(pending).reshape(grid)


def place_positions(classify, x, positions, batch_size, mesh):
    """Chunks positions; with a mesh, shards each chunk's positions over devices.

    Returns (classify, x, chunks [n_chunks, batch, 2]) ready for the jitted program;
    with a mesh, classify's weights and x are replicated (``P()``).
    """
    if mesh is None:
        return (
            classify,
            jnp.asarray(x),
            jnp.asarray(chunked_positions(positions, batch_size)),
        )
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    # Explicit-axis meshes (jax.make_mesh's default) would demand out_sharding on
    # every gather in the fill; GSPMD propagation (Auto axes) needs none.
    auto = (jax.sharding.AxisType.Auto,) * len(mesh.axis_names)
    mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=auto)
    devices = mesh.devices.size
    batch_size = -(-batch_size // devices) * devices  # divisible by the mesh
    chunks = chunked_positions(positions, batch_size)
    spec = jax.sharding.PartitionSpec(None, mesh.axis_names)
    chunks = jax.device_put(chunks, jax.sharding.NamedSharding(mesh, spec))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    classify, x = jax.device_put((classify, jnp.asarray(x)), replicated)
    return classify, x, chunks


def check_map_args(classify, x, size, stride, method, batch_size):
    """Validates prediction-map arguments; returns them normalised.

    Returns:
      ``(classify as a Partial, x [H, W, C] float32, size, stride, method,
      batch_size)``.
    """
    classify = _as_partial(classify)
    arr = inpaint.check_image(x)
    size, stride = inpaint.check_block(arr.shape, size, stride)
    method = inpaint.check_method(method)
    batch_size = inpaint.check_int(batch_size, "batch_size", 1)
    if method == "telea" and arr.shape[-1] not in (1, 3):
        raise ValueError(
            f"method='telea' needs x with 1 or 3 channels, got {arr.shape[-1]}"
        )
    return classify, arr, size, stride, method, batch_size


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

    Args:
      classify: pure function [B, H, W, C] -> logits [B, K]; a plain function or a
        ``jax.tree_util.Partial`` carrying weights (passed to jit as a pytree).
      x: [H, W, C] float32 image in [0, 1].
      size: block side s, 1 <= s <= min(H, W).
      stride: pixel step between block positions, >= 1.
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
    """
    classify, arr, size, stride, method, batch_size = check_map_args(
        classify, x, size, stride, method, batch_size
    )
    height, width = arr.shape[:2]
    grid = inpaint.grid_shape(height, width, size, stride)
    positions = inpaint.block_positions(height, width, size, stride)
    batch_size = min(batch_size, len(positions))
    if method == "harmonic":
        classify, xd, chunks = place_positions(
            classify, arr, positions, batch_size, mesh
        )
        return _harmonic_map_jit(classify, xd, chunks, size, grid)
    return telea_map(classify, arr, positions, size, batch_size, grid, workers)
