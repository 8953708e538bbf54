"""The barrier at which the processes of one run meet, noticing a lost one.

A file barrier in the run directory (which every process shares, as it holds
their row shards): each process keeps a heartbeat file fresh, so a process
waiting at the barrier tells a slow peer from a lost one (killed, its host
gone) and stops with one line naming it (exit 2; rerun to continue), instead of
waiting for the coordination service to abort the job with a core dump.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
from jax.experimental import multihost_utils

import mrs_jax.commands._cli as cli

BARRIER_DIR = ".processes"


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
