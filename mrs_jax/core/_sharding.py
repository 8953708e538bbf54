"""Meshes and placement for spreading the sample axis over every device.

A 1-D mesh with a single ``"samples"`` axis spans the devices of this process,
so the same code runs on one CPU, one GPU, or each host of a multi-host run
after ``jax.distributed.initialize`` (where processes share out the images).
Counts never depend on the mesh (``docs/devices.md``).
"""

from __future__ import annotations

import functools
import os
import re

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

SAMPLES = "samples"
_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=(\d+)")


# More CPU devices than this per usable core make XLA's collectives miss their
# 40 s rendezvous (seen with 512 devices on 2 cores) or fail outright (2,049).
DEVICES_PER_CORE = 4


def max_cpu_devices() -> int:
    """The most CPU devices :func:`use_cpu_cores` accepts on this host."""
    return DEVICES_PER_CORE * len(os.sched_getaffinity(0))


def use_cpu_cores(count: int | None = None) -> int:
    """Splits the host CPU into ``count`` JAX devices, one per core by default.

    XLA runs one CPU device's convolutions across all cores with its intra-op
    threads, which for the small images and channels of CIFAR models leaves the
    cores idle much of the time; with one device per core the sample axis is
    sharded over them (``sample_mesh``) and each core runs its own share. CIFAR
    models count faster this way, very small models may not
    (``docs/devices.md``). Counts are those of one device (draw ``i`` always
    uses ``fold_in(key, i)``).

    Call it right after ``import jax``, before anything runs on a device. A
    device count the user already chose (``jax_num_cpu_devices``, or
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``, as the tests
    set) is kept. On a GPU or TPU host it changes only the CPU backend, which
    then goes unused.

    Args:
      count: devices, in [1, :func:`max_cpu_devices`]; None: the cores this
        process may run on.

    Returns:
      The number of CPU devices JAX will create.

    Raises:
      ValueError: ``count`` out of range.
      RuntimeError: JAX's backends are already initialised (too late to split).
    """
    if count is None:
        count = len(os.sched_getaffinity(0))
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"count must be an int, got {type(count).__name__}")
    most = max_cpu_devices()
    if not 1 <= count <= most:
        raise ValueError(
            f"count must be in [1, {most}] on this host ({DEVICES_PER_CORE} per "
            "usable core: with many more devices than cores XLA's CPU collectives "
            f"stall and abort), got {count}"
        )
    chosen = jax.config.jax_num_cpu_devices
    if chosen > 0:
        return int(chosen)
    flagged = _DEVICE_COUNT_FLAG.search(os.environ.get("XLA_FLAGS", ""))
    if flagged:
        return int(flagged.group(1))
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as error:
        raise RuntimeError(
            "use_cpu_cores must run before JAX's backends start (right after "
            f"import jax): {error}"
        ) from None
    return count


@functools.cache
def sample_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh named ``"samples"`` over every device of this process.

    Certification is parallel over images across processes (the certify
    command's multi-process mode), so within one process the samples of one
    image are sharded over its own devices; in a single process that is every
    device. ``num_devices`` restricts it to the first devices (for comparisons
    and tests).

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
