"""Meshes and placement for spreading the sample axis over every device.

A 1-D mesh with a single ``"samples"`` axis spans the devices of this process,
so the same code runs on a laptop CPU, one GPU, or each host of a multi-host pod
after ``jax.distributed.initialize`` (where processes share out the images).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

SAMPLES = "samples"


@functools.cache
def sample_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh named ``"samples"`` over every device of this process.

    Certification is parallel over images across processes (``mrs_jax.distributed``),
    so within one process the samples of one image are sharded over its own
    devices; in a single process that is every device. ``num_devices`` restricts
    it to the first devices (for comparisons and tests).

    The axis is ``Auto`` so that XLA's partitioner propagates the sample
    sharding through any classifier without the classifier knowing of it.
    """
    devices = jax.local_devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(
                f"num_devices must be in [1, {len(devices)}], got {num_devices}"
            )
        devices = devices[:num_devices]
    return jax.make_mesh(
        (len(devices),), (SAMPLES,), axis_types=(AxisType.Auto,), devices=devices
    )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def along_samples(mesh: Mesh, ndim: int) -> NamedSharding:
    """Shards axis 0 over the mesh and keeps the other ``ndim - 1`` axes whole."""
    return NamedSharding(mesh, P(SAMPLES, *([None] * (ndim - 1))))


def replicate(value, mesh: Mesh) -> jax.Array:
    """Places a host value, identical on every process, on every device of ``mesh``."""
    return put(np.asarray(value), replicated(mesh))


def round_up_to_devices(size: int, mesh: Mesh) -> int:
    """The least multiple of the mesh's device count that is >= ``size``."""
    devices = mesh.devices.size
    return -(-size // devices) * devices


def put(value, sharding: NamedSharding):
    """``jax.device_put`` that also works when ``sharding`` spans other processes.

    In a multi-process run every process passes the same host value (a pytree),
    and each fills only its own devices' shards from it.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(value, sharding)

    def one(leaf):
        host = np.asarray(leaf)
        return jax.make_array_from_callback(
            host.shape, sharding, lambda index: host[index]
        )

    return jax.tree.map(one, value)
