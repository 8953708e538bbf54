"""Two processes on 127.0.0.1, two fake CPU devices each, against one process."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _job_helpers import NUM_CLASSES, tiny_classifier, tiny_config, xla_flags

from mrs_jax.commands import _distributed as distributed
from mrs_jax.job import _run as job
from mrs_jax.rows import _files as rows

WORKER = Path(__file__).resolve().parent / "_distributed_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(command: list[str]) -> list[str]:
    """Runs ``command`` as processes 0 and 1 of 2 (2 fake CPU devices each)."""
    address = f"127.0.0.1:{_free_port()}"
    env = dict(
        os.environ,
        XLA_FLAGS=xla_flags(2),
        JAX_PLATFORMS="cpu",
    )
    flags = ["--coordinator_address", address, "--num_processes", "2"]
    workers = [
        subprocess.Popen(
            [*command, *flags, "--process_id", str(index)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(2)
    ]
    outputs = []
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, output[-3000:]
        outputs.append(output)
    return outputs


@pytest.mark.parametrize("mode", ["practical"])
def test_two_processes_give_the_single_process_rows(tmp_path, mode):
    single = job.run(
        tiny_config(mode=mode),
        tmp_path / "single",
        classify=tiny_classifier(),
        num_classes=NUM_CLASSES,
        progress=False,
    )
    out = tmp_path / "multi"
    _run_two_processes([sys.executable, str(WORKER), "--out", str(out), "--mode", mode])

    merged = rows.read(out / "rows.jsonl")
    shards = sorted(p.name for p in out.glob("rows-*-of-*.jsonl"))
    assert shards == ["rows-000-of-002.jsonl", "rows-001-of-002.jsonl"]
    assert [r["index"] for r in merged] == [r["index"] for r in single]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    assert strip(merged) == strip(single)


def test_initialize_rejects_inconsistent_settings(monkeypatch):
    _no_launcher(monkeypatch)
    with pytest.raises(ValueError, match="num_processes > 1"):
        distributed.initialize(None, 2, 0)
    with pytest.raises(ValueError, match="needs num_processes"):
        distributed.initialize("127.0.0.1:1234", None, 0)
    with pytest.raises(ValueError, match="process_id"):
        distributed.initialize("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="num_processes"):
        distributed.initialize("127.0.0.1:1234", 0, 0)
    assert distributed.initialize(None, None, None).count == 1


def test_one_process_launchers_start_nothing(monkeypatch):
    # A launcher's variables for one process (or half a SLURM step) are a
    # single process: jax.distributed is not started (it would bind a port).
    for env in (
        {"SLURM_NTASKS": "1", "SLURM_STEP_NODELIST": "node1"},
        {"SLURM_NTASKS": "2"},  # sbatch's shell, not an srun step
        {"OMPI_COMM_WORLD_SIZE": "1"},
        {"TPU_WORKER_HOSTNAMES": "one-host"},
    ):
        _no_launcher(monkeypatch)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert distributed.initialize() == distributed.Processes(), env


def _no_launcher(monkeypatch):
    for name in distributed._LAUNCHERS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SLURM_STEP_NODELIST", raising=False)


def _slurm_step(index: int, port: int) -> dict[str, str]:
    """What ``srun -n 2`` on one node sets for task ``index``."""
    return {
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_NODELIST": "127.0.0.1",
        "SLURM_NTASKS": "2",
        "SLURM_PROCID": str(index),
        "SLURM_LOCALID": str(index),
        "JAX_COORDINATOR_PORT": str(port),
    }


def test_a_lost_process_is_one_line_and_exit_2(tmp_path):
    """Started by SLURM's variables alone; process 1 is killed mid-run, and
    process 0 stops while it still works, long before JAX's 100 s abort."""
    out = tmp_path / "run"
    port = _free_port()
    base = dict(
        os.environ,
        XLA_FLAGS=xla_flags(2),
        JAX_PLATFORMS="cpu",
    )
    base.pop("MRS_DEBUG", None)
    command = [sys.executable, str(WORKER), "--out", str(out), "--stale_s", "4"]
    workers = [
        subprocess.Popen(
            [*command, "--num_images", "400"],
            env={**base, **_slurm_step(index, port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    try:
        deadline = time.monotonic() + 240
        heartbeat = out / distributed.BARRIER_DIR / "alive-1"
        # Its second beat comes from the thread started after the processes met.
        while not (heartbeat.exists() and heartbeat.read_text() not in ("", "0")):
            assert workers[1].poll() is None, workers[1].stderr.read()[-3000:]
            assert time.monotonic() < deadline, "process 1 did not start"
            time.sleep(0.05)
        workers[1].kill()  # SIGKILL: no goodbye
        killed_at = time.monotonic()
        _, stderr = workers[0].communicate(timeout=120)
        waited = time.monotonic() - killed_at
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    assert workers[0].returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: process 1 of 2 was lost"), last
    assert "rerun the same command" in last
    assert waited < 80, "before the coordination service's heartbeat timeout"
    kept = rows.read(out / "rows-000-of-002.jsonl", torn_tail="skip")
    assert len(kept) < 200 and all(r["index"] % 2 == 0 for r in kept)


def test_the_barrier_waits_for_a_slow_process_and_names_a_lost_one(tmp_path):
    # Two processes' barriers in one folder, each with its own heartbeat.
    first = distributed.run_barrier(
        tmp_path, distributed.Processes(0, 2), stale_s=0.6, beat_s=0.1, watch=False
    )
    folder = tmp_path / distributed.BARRIER_DIR
    (folder / "merge.0-1").write_text("")  # an earlier run's arrival
    second = distributed.run_barrier(
        tmp_path, distributed.Processes(1, 2), stale_s=0.6, beat_s=0.1, watch=False
    )
    late = threading.Timer(1.5, second, ("merge",))
    late.start()
    started = time.monotonic()
    first("merge")  # slower than stale_s, but alive
    assert time.monotonic() - started >= 1.4
    late.join()

    # A process that never beats (its heartbeat file is a stale one).
    lonely = distributed.run_barrier(
        tmp_path / "b", distributed.Processes(0, 3), stale_s=0.5, beat_s=0.1
    )
    (tmp_path / "b" / distributed.BARRIER_DIR / "alive-2").write_text("7")
    Path(tmp_path / "b" / distributed.BARRIER_DIR / "merge.0-1").write_text("")
    with pytest.raises(distributed.PeerLostError, match="process 2 of 3 was lost"):
        lonely("merge")


def test_two_process_training_matches_one_process(tmp_path):
    """Data-parallel training over one global mesh of 2 processes x 2 devices."""
    base = [
        sys.executable,
        "-m",
        "train",
        "--config",
        "train/configs/digits.py",
        "--smoke",
        "--no_progress",
    ]
    env_one = dict(
        os.environ,
        XLA_FLAGS=xla_flags(4),
        JAX_PLATFORMS="cpu",
    )
    subprocess.run(
        [*base, "--workdir", str(tmp_path / "one")],
        env=env_one,
        check=True,
        capture_output=True,
        timeout=300,
    )
    outputs = _run_two_processes([*base, "--workdir", str(tmp_path / "two")])
    assert all("of 2, 4 devices in all" in output for output in outputs)

    def rows(name):
        path = tmp_path / name / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    one, two = rows("one"), rows("two")
    assert [r["epoch"] for r in two] == [r["epoch"] for r in one] == [1]
    for key in ("loss", "train_accuracy", "clean_accuracy", "noisy_accuracy"):
        assert two[0][key] == pytest.approx(one[0][key], rel=1e-4, abs=1e-6), key
    assert (tmp_path / "two" / "checkpoints" / "1").is_dir()


def _run_two_different(tmp_path, per_process: list[list[str]]) -> list[tuple[int, str]]:
    """Processes 0 and 1 of 2, each with its own extra arguments."""
    address = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, XLA_FLAGS=xla_flags(2),
               JAX_PLATFORMS="cpu")  # fmt: skip
    env.pop("MRS_DEBUG", None)
    flags = ["--coordinator_address", address, "--num_processes", "2"]
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *extra, *flags, "--process_id", str(index)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for index, extra in enumerate(per_process)
    ]
    results = []
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        results.append((worker.returncode, output))
    return results


@pytest.mark.parametrize("differ", ["config", "out"])
def test_processes_started_differently_end_with_one_line_and_write_nothing(
    tmp_path, differ
):
    out = tmp_path / "run"
    if differ == "config":
        extras = [["--out", str(out), "--num_images", str(n)] for n in (3, 4)]
        expected = "their config differ"
    else:
        extras = [["--out", str(tmp_path / f"run{i}")] for i in range(2)]
        expected = "their run directory (--out) differ"
    for code, output in _run_two_different(tmp_path, extras):
        assert code == 2, output[-3000:]
        assert "Traceback" not in output and "AssertionError" not in output, output
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0], output[-3000:]
    for folder in (out, tmp_path / "run0", tmp_path / "run1"):
        assert (
            not list(folder.glob("rows*.jsonl")) and not (folder / "run.json").exists()
        )


def test_two_processes_given_the_same_process_id_end_with_one_line(tmp_path):
    """The second to claim the id is refused at once (JAX alone waited five
    minutes, then aborted both); the first then misses its peer and is ended
    by the test."""
    address = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, XLA_FLAGS=xla_flags(2),
               JAX_PLATFORMS="cpu")  # fmt: skip
    env.pop("MRS_DEBUG", None)
    command = [sys.executable, str(WORKER), "--out", str(tmp_path / "run"),
               "--coordinator_address", address, "--num_processes", "2",
               "--process_id", "0"]  # fmt: skip
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(3.0)  # the first holds its claim while it waits for process 1
        second = subprocess.run(command, env=env, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert second.returncode == 2, second.stderr[-3000:]
        assert second.stderr.strip().splitlines() == [
            f"error: --process_id 0 is already taken on this host by another process "
            f"of the run coordinated at {address}: give each process its own "
            "--process_id"
        ]
    finally:
        first.kill()
        first.wait()
