"""Multi-process start-up on JAX's own distributed runtime.

``jax.distributed.initialize`` connects the processes (one per host, or several
on one machine for tests). Certification is embarrassingly parallel over
images, so each process certifies its own share of them with the sample axis
sharded over its own devices (``mrs_jax.sharding.sample_mesh``), and the
processes meet only at a barrier of the coordination service before process 0
merges the row shards. Results depend only on the keys, never on how many
processes or devices ran them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable

import jax

ENV_ADDRESS = "MRS_COORDINATOR_ADDRESS"
ENV_COUNT = "MRS_NUM_PROCESSES"
ENV_INDEX = "MRS_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's place: ``index`` of ``count``, and a named ``barrier``."""

    index: int = 0
    count: int = 1
    barrier: Callable[[str], None] | None = None


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Adds ``--coordinator_address``, ``--num_processes`` and ``--process_id``."""
    group = parser.add_argument_group("multi-process (jax.distributed)")
    group.add_argument(
        "--coordinator_address",
        default=None,
        help=f"HOST:PORT of process 0 (or ${ENV_ADDRESS})",
    )
    group.add_argument(
        "--num_processes",
        type=int,
        default=None,
        help=f"number of processes (or ${ENV_COUNT})",
    )
    group.add_argument(
        "--process_id",
        type=int,
        default=None,
        help=f"this process's id (or ${ENV_INDEX})",
    )


def initialize_from(args: argparse.Namespace) -> Processes:
    """Initialises ``jax.distributed`` from flags or the environment.

    With no coordinator address this is a single process and nothing is
    initialised.
    """
    address = args.coordinator_address or os.environ.get(ENV_ADDRESS)
    count = args.num_processes or _env_int(ENV_COUNT)
    index = args.process_id if args.process_id is not None else _env_int(ENV_INDEX)
    return initialize(address, count, index)


def initialize(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> Processes:
    """Connects to the coordinator and returns this process's :class:`Processes`.

    Raises:
      ValueError: an address without a process count and id, or an id out of range.
    """
    if coordinator_address is None:
        if num_processes not in (None, 1):
            raise ValueError("num_processes > 1 needs a coordinator_address")
        return Processes()
    if num_processes is None or process_id is None:
        raise ValueError("coordinator_address needs num_processes and process_id")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(
            f"process_id must be in [0, num_processes={num_processes}), "
            f"got {process_id}"
        )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=None,
    )
    return Processes(jax.process_index(), jax.process_count(), barrier)


def barrier(name: str, timeout_s: float = 3600.0) -> None:
    """Waits until every process reaches the barrier ``name``.

    Uses the coordination service (no device collective), so it works for CPU
    processes that share no collective backend.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed as _distributed

    client = _distributed.global_state.client
    client.wait_at_barrier(name, int(timeout_s * 1000))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return None if value in (None, "") else int(value)
