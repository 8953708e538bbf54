"""Multi-process start-up on JAX's own distributed runtime, and a barrier that
notices a lost process.

:func:`initialize` starts ``jax.distributed.initialize()`` with its own
auto-detection where a launcher shows several processes (``srun -n 2``,
``mpirun``, a Cloud TPU pod, ``JAX_COORDINATOR_ADDRESS``; ``--distributed``
asks for it anywhere, e.g. on Kubernetes); ``--coordinator_address``,
``--num_processes`` and ``--process_id`` override what it detects. Certification
is embarrassingly parallel over images, so each process certifies its own share
with the sample axis sharded over its own devices (``mrs_jax.sharding``), and
the processes meet only at :func:`run_barrier` before process 0 merges the row
shards. Results depend only on the keys, never on how many processes or devices
ran them. The barrier, which notices a lost process, is ``_barrier.py``. Only
public JAX APIs are used.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile

import jax

from mrs_jax.commands._barrier import (
    BARRIER_DIR as BARRIER_DIR,
    PeerLostError as PeerLostError,
    Processes as Processes,
    run_barrier as run_barrier,
    sync_barrier as sync_barrier,
)
from mrs_jax.core import checks as _checks, runlock

ENV_ADDRESS = "MRS_COORDINATOR_ADDRESS"
ENV_COUNT = "MRS_NUM_PROCESSES"
ENV_INDEX = "MRS_PROCESS_ID"

# Variables of the launchers whose processes jax.distributed.initialize() finds
# by itself; with none of them (and no flag) a run is a single process.
_LAUNCHERS = {
    "JAX_COORDINATOR_ADDRESS": None,
    "SLURM_NTASKS": "SLURM_STEP_NODELIST",  # srun with more than one task
    "OMPI_COMM_WORLD_SIZE": None,  # mpirun
    "TPU_WORKER_HOSTNAMES": None,  # a Cloud TPU pod slice (GKE)
    "TPU_PROCESS_ADDRESSES": None,
    "MEGASCALE_COORDINATOR_ADDRESS": None,  # multislice TPU
}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Adds ``--coordinator_address``, ``--num_processes``, ``--process_id`` and
    ``--distributed``."""
    group = parser.add_argument_group(
        "multi-process (jax.distributed; SLURM, Open MPI and Cloud TPU pods are "
        "detected, these override)"
    )
    group.add_argument(
        "--coordinator_address",
        default=None,
        help=f"HOST:PORT of process 0 (or $JAX_COORDINATOR_ADDRESS, ${ENV_ADDRESS})",
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
    group.add_argument(
        "--distributed",
        action="store_true",
        default=None,
        help="start jax.distributed even where no launcher is recognised "
        "(e.g. Kubernetes); JAX detects the rest",
    )


def initialize_from(args: argparse.Namespace) -> Processes:
    """:func:`initialize` from :func:`add_flags`' flags, else the environment."""
    address = args.coordinator_address or os.environ.get(ENV_ADDRESS) or None
    count = (
        args.num_processes if args.num_processes is not None else _env_int(ENV_COUNT)
    )
    index = args.process_id if args.process_id is not None else _env_int(ENV_INDEX)
    return initialize(address, count, index, detect=getattr(args, "distributed", None))


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    detect: bool | None = None,
) -> Processes:
    """Starts ``jax.distributed`` where the run has several processes.

    A host driver; call it before any JAX computation. ``jax.distributed.
    initialize`` gets the given settings and detects the missing ones (SLURM,
    Open MPI, Cloud TPU, Kubernetes, ``JAX_COORDINATOR_ADDRESS``). With nothing
    given it is called only where a launcher's variables show several processes
    (``srun -n 2``, ``mpirun``, a TPU pod, ``JAX_COORDINATOR_ADDRESS``), or
    with ``detect=True``; otherwise the run is one process and nothing starts.

    Args:
      coordinator_address: ``HOST:PORT`` of process 0.
      num_processes: the number of processes (>= 1).
      process_id: this process's index in ``[0, num_processes)``.
      detect: True: always let JAX detect a cluster; False: never (only the
        given settings); None: where a launcher is recognised.

    Returns:
      This process's :class:`Processes` (``barrier``: :func:`sync_barrier`).

    Raises:
      ValueError: settings out of range, or settings JAX cannot complete (an
        address without a process count, a count without an address).
    """
    _check_settings(num_processes, process_id)
    if detect is None:
        detect = _launcher() is not None
    if not detect:
        _check_complete(coordinator_address, num_processes, process_id)
        if coordinator_address is None:  # and at most one process
            return Processes()
    if coordinator_address is not None and process_id is not None:
        _claim_process_id(coordinator_address, process_id)
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            cluster_detection_method=None if detect else "deactivate",
        )
    except ValueError as error:  # JAX could not complete the settings
        raise ValueError(
            f"cannot start jax.distributed: {error} Pass --coordinator_address, "
            "--num_processes and --process_id (the coordinator_address needs "
            "num_processes and process_id), or run under a launcher JAX detects "
            "(SLURM, Open MPI, a Cloud TPU pod)"
        ) from error
    count = jax.process_count()
    return Processes(jax.process_index(), count, sync_barrier if count > 1 else None)


_CLAIMS: list = []  # the held claims: released when the process ends


def _claim_process_id(coordinator_address: str, process_id: int) -> None:
    """Refuses a ``process_id`` another process on this host already holds for
    the same coordinator (JAX would wait five minutes, then abort both).

    The claim is a lock file in the temporary folder, held until this process
    ends; processes on other hosts are not seen (JAX still times them out).
    """
    digest = hashlib.sha256(coordinator_address.encode()).hexdigest()[:16]
    claim = runlock.hold(
        tempfile.gettempdir(),
        "process id",
        name=f"mrs-jax-{digest}-process-{process_id}.lock",
    )
    try:
        _CLAIMS.append((claim, claim.__enter__()))
    except runlock.LockedError:
        raise ValueError(
            f"--process_id {process_id} is already taken on this host by another "
            f"process of the run coordinated at {coordinator_address}: give each "
            "process its own --process_id"
        ) from None


def _check_settings(num_processes: int | None, process_id: int | None) -> None:
    if num_processes is not None:
        _checks.positive_int(num_processes, "num_processes")
    if process_id is not None:
        _checks.positive_int(process_id, "process_id", minimum=0)
        if num_processes is not None and process_id >= num_processes:
            raise ValueError(
                f"process_id must be in [0, num_processes={num_processes}), "
                f"got {process_id}"
            )


def _check_complete(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> None:
    """Refuses settings that nothing detected can complete."""
    hint = "(or run under a launcher JAX detects: SLURM, Open MPI, a Cloud TPU pod)"
    if coordinator_address is None and num_processes not in (None, 1):
        raise ValueError(
            f"num_processes > 1 needs a coordinator_address (--coordinator_address "
            f"HOST:PORT or $JAX_COORDINATOR_ADDRESS) {hint}, got {num_processes}"
        )
    if coordinator_address is not None and None in (num_processes, process_id):
        raise ValueError(
            f"coordinator_address needs num_processes and process_id {hint}"
        )


def _launcher() -> str | None:
    """The variable of a recognised multi-process launcher, or None."""
    for name, companion in _LAUNCHERS.items():
        value = os.environ.get(name, "")
        if not value or (companion is not None and companion not in os.environ):
            continue
        if value.isdigit() and int(value) <= 1:  # a count of one process
            continue
        if name.startswith("TPU_") and "," not in value:  # one host
            continue
        return name
    return None


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {value!r}") from None
