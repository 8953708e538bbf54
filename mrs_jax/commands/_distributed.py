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
ran them.

The barrier is a file barrier in the run directory (which every process shares,
as it holds their row shards): each process keeps a heartbeat file fresh, so a
process waiting at the barrier tells a slow peer from a lost one (killed, its
host gone) and stops with one line naming it (exit 2; rerun to continue),
instead of waiting for the coordination service to abort the job with a core
dump. Only public JAX APIs are used.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
from jax.experimental import multihost_utils

import mrs_jax.commands._cli as cli
from mrs_jax.core import checks as _checks, runlock

ENV_ADDRESS = "MRS_COORDINATOR_ADDRESS"
ENV_COUNT = "MRS_NUM_PROCESSES"
ENV_INDEX = "MRS_PROCESS_ID"
BARRIER_DIR = ".processes"

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


class PeerLostError(cli.ExitAtOnceError):
    """Another process of the run stopped (killed, or its host gone).

    The run's collectives can never finish, so the command line prints one
    line and exits at once (status 2) without the interpreter's teardown.
    """


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's place: ``index`` of ``count``, and a named ``barrier``.

    ``barrier`` is :func:`sync_barrier` (or None for one process); a run that
    writes a run directory uses :func:`run_barrier` there instead, which also
    notices a lost process.
    """

    index: int = 0
    count: int = 1
    barrier: Callable[[str], None] | None = None


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


def sync_barrier(name: str) -> None:
    """Waits until every process reaches ``name`` (a device collective).

    ``jax.experimental.multihost_utils.sync_global_devices``; a lost process
    makes it wait until the coordination service ends the job. Prefer
    :func:`run_barrier` where the processes share a folder.
    """
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def run_barrier(
    directory: str | os.PathLike,
    processes: Processes,
    *,
    stale_s: float = 30.0,
    beat_s: float = 2.0,
    watch: bool = True,
) -> Callable[[str], None] | None:
    """A barrier for the processes of one run that notices a lost process.

    A host driver. Every process calls it (it meets the others once, with
    :func:`sync_barrier`), then keeps ``<directory>/.processes/alive-<i>``
    fresh every ``beat_s`` seconds from a daemon thread. The returned
    ``barrier(name)`` writes this process's arrival file and waits for the
    others'. A process whose heartbeat has not changed for ``stale_s`` seconds
    (by this process's clock, so host clocks need not agree) is lost: the
    barrier raises :class:`PeerLostError`. With ``watch``, a process lost while
    this one still works (before its first barrier) ends this one too, at once:
    the one line ``error: ...`` on stderr and ``os._exit(2)``, as a kill would
    (rows are fsynced one by one, so every finished row is kept), instead of the
    coordination service aborting it with a core dump 100 s later.

    Args:
      directory: the run directory every process shares (e.g. ``--out``).
      processes: from :func:`initialize`.
      stale_s: seconds without a heartbeat after which a process is lost; keep
        it well below ``jax.distributed``'s heartbeat timeout (100 s).
      beat_s: seconds between heartbeats (< ``stale_s``).
      watch: also watch the others while working (see above).

    Returns:
      ``barrier(name)``, or None for a single process.

    Raises:
      PeerLostError: (from ``barrier``) naming the lost process and how to
        resume.
    """
    if not isinstance(processes, Processes):
        raise TypeError(f"processes must be Processes, got {type(processes).__name__}")
    if not 0 < beat_s < stale_s:
        raise ValueError(f"need 0 < beat_s < stale_s, got {beat_s}, {stale_s}")
    if processes.count == 1:
        return None
    folder = Path(directory) / BARRIER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"*-{processes.index}"):  # an earlier run's files
        old.unlink()
    peers = _Peers(folder, processes, stale_s)
    heartbeat = _Heartbeat(peers, beat_s, watch=watch)
    # One name for every process: processes given different folders meet here
    # too, and the job then refuses them with one line (job.run).
    sync_barrier("mrs_jax.commands._distributed.run_barrier")
    heartbeat.start()
    return _FileBarrier(peers, heartbeat, poll_s=min(0.1, beat_s / 4))


class _Peers:
    """The other processes' heartbeats in ``folder``, as this process saw them."""

    def __init__(self, folder: Path, processes: Processes, stale_s: float):
        self.folder, self.processes, self.stale_s = folder, processes, stale_s
        now = time.monotonic()
        others = [i for i in range(processes.count) if i != processes.index]
        self.seen = {i: (None, now) for i in others}  # (beat, when it changed)
        self.lock = threading.Lock()

    def lost(self, peers) -> str | None:
        """The message for the first of ``peers`` whose heartbeat is stale."""
        with self.lock:
            now = time.monotonic()
            for peer in peers:
                try:
                    beat = (self.folder / f"alive-{peer}").read_text()
                except OSError:  # not written yet, or its folder is gone
                    beat = None
                last, since = self.seen[peer]
                if beat != last:
                    self.seen[peer] = beat, now
                elif now - since > self.stale_s:
                    return self._message(peer, now - since)
        return None

    def _message(self, peer: int, silent_s: float) -> str:
        index, count = self.processes.index, self.processes.count
        return (
            f"process {peer} of {count} was lost (no heartbeat for {silent_s:.0f} "
            f"s; process {index} stops too) in {self.folder.parent}; the finished "
            "rows are kept: rerun the same command (with all processes, or as one "
            "process) to continue"
        )


class _Heartbeat(threading.Thread):
    """Rewrites this process's heartbeat every ``beat_s`` seconds; with
    ``watch``, ends the process when another is lost before the first barrier."""

    def __init__(self, peers: _Peers, beat_s: float, *, watch: bool):
        super().__init__(name="mrs_jax heartbeat", daemon=True)
        self.peers, self.beat_s = peers, beat_s
        self.path = peers.folder / f"alive-{peers.processes.index}"
        self.beats = itertools.count()
        self.watching = threading.Event()
        if watch:
            self.watching.set()
        self.beat()

    def beat(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(str(next(self.beats)))
        tmp.replace(self.path)

    def run(self) -> None:
        while True:
            time.sleep(self.beat_s)
            try:
                self.beat()
            except OSError:  # the run directory went away: nothing to keep alive
                return
            if self.watching.is_set():
                message = self.peers.lost(self.peers.seen)
                # A peer may finish and exit after a barrier: watch only before.
                if message is not None and self.watching.is_set():
                    print(f"error: {message}", file=sys.stderr, flush=True)
                    cli.flush_and_exit(cli.USER_ERROR_EXIT)


class _FileBarrier:
    """``barrier(name)``: see :func:`run_barrier`."""

    def __init__(self, peers: _Peers, heartbeat: _Heartbeat, poll_s: float):
        self.peers, self.heartbeat, self.poll_s = peers, heartbeat, poll_s
        self.counts: dict[str, int] = {}

    def __call__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        self.heartbeat.watching.clear()  # from here on the barriers watch
        sequence = self.counts.get(name, 0)
        self.counts[name] = sequence + 1
        stem = f"{name.replace(os.sep, '_')}.{sequence}"
        folder = self.peers.folder
        (folder / f"{stem}-{self.peers.processes.index}").write_text("")
        waiting = set(self.peers.seen)
        while True:
            waiting = {i for i in waiting if not (folder / f"{stem}-{i}").exists()}
            if not waiting:
                return
            message = self.peers.lost(sorted(waiting))
            if message is not None:
                raise PeerLostError(message)
            time.sleep(self.poll_s)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {value!r}") from None
